"""Training the default model on a synthetic captioned world (world.py), the scene checker
(checker.py) and the grammar's tokenizer files (tokenizers.py)."""
