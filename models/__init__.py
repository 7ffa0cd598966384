"""GRATServe models: scriptable DiT / text-encoder / VAE modules and the bundle exporter."""
