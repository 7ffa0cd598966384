// gratctl: command-line client of GRATServe.
//
//   gratctl [--server HOST:PORT] generate --prompt TEXT [--width W --height H --steps N
//           --seed S --attention auto|full|B|X --group HxW|TxHxW --radius R --full-steps K
//           --guidance G --negative TEXT --model NAME --format png|webp|mp4 --frames F
//           --fps R --priority P --timeout SECONDS --preview --quiet] --out FILE
//   (without --format, the format follows the extension of --out: .png, .webp, .mp4)
//   gratctl [--server HOST:PORT] cancel JOB_ID
//   gratctl [--server HOST:PORT] models
//   gratctl [--server HOST:PORT] health [SERVICE]
//
// The server defaults to $GRAT_SERVER, else localhost:50051. Exit status: 0 success, 1 the
// RPC failed (the gRPC status is printed), 2 bad usage or an unwritable output file.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "grat/v1/generation.grpc.pb.h"

namespace {

std::string g_token;  // API key: every call carries it

// Every RPC's context: the API key, when there is one.
void authorize(grpc::ClientContext& ctx) {
  if (!g_token.empty()) ctx.AddMetadata("authorization", "Bearer " + g_token);
}

const char* kUsage =
    "usage: gratctl [--server HOST:PORT] [--tls] [--ca FILE] [--token KEY] COMMAND ...\n"
    "  generate --prompt TEXT --out FILE [--width 256] [--height 256] [--steps N] [--seed S]\n"
    "           [--attention auto|full|B|X] [--group HxW|TxHxW] [--radius R] [--full-steps K]\n"
    "           [--guidance G] [--negative TEXT] [--model NAME] [--format png|webp|mp4]\n"
    "           [--frames F] [--fps R] [--priority P] [--timeout SECONDS] [--preview] [--quiet]\n"
    "           Without --format: from the extension of --out (.png, .webp, .mp4).\n"
    "           Video models: --frames 4k+1 (0: the model's default), --fps 1..60 (0: default).\n"
    "  cancel JOB_ID\n"
    "  models\n"
    "  health [SERVICE]        (SERVICE: \"\" overall, or a model name)\n"
    "Server: --server, else $GRAT_SERVER, else localhost:50051.\n"
    "Security: --tls (the system's roots, or --ca FILE, which implies --tls); --token KEY (else\n"
    "$GRAT_TOKEN) is sent as 'authorization: Bearer KEY'.\n";

const char* code_name(grpc::StatusCode c) {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? names[i] : "UNKNOWN";
}

int fail(const grpc::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", code_name(s.error_code()), s.error_message().c_str());
  return 1;
}

int usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "gratctl: %s\n", why.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

struct Args {
  std::map<std::string, std::string> opts;  // --key value
  std::vector<std::string> positional;
};

// Flags without a value.
bool is_flag(const std::string& k) { return k == "preview" || k == "quiet"; }

bool parse(int argc, char** argv, int from, Args* a, std::string* err) {
  for (int i = from; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      std::string k = s.substr(2), v;
      const auto eq = k.find('=');
      if (eq != std::string::npos) {
        v = k.substr(eq + 1);
        k = k.substr(0, eq);
      } else if (is_flag(k)) {
        v = "1";
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        *err = "--" + k + " needs a value";
        return false;
      }
      a->opts[k] = v;
    } else {
      a->positional.push_back(s);
    }
  }
  return true;
}

bool to_int(const std::string& s, long long* v) {
  char* end = nullptr;
  errno = 0;
  *v = std::strtoll(s.c_str(), &end, 10);
  return !s.empty() && *end == '\0' && errno == 0;
}

void progress_bar(int64_t step, int64_t total) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * step / total) : 0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r[%s] %lld/%lld steps", bar.c_str(), static_cast<long long>(step),
               static_cast<long long>(total));
  std::fflush(stderr);
}

int generate(grat::v1::Generation::Stub& stub, const Args& a) {
  static const std::vector<std::string> known = {
      "prompt", "negative", "model",    "width",     "height",  "frames", "fps",
      "steps",  "seed",     "guidance", "attention", "group",   "radius", "full-steps",
      "format", "priority", "timeout",  "out",       "preview", "quiet"};
  for (const auto& [k, v] : a.opts) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      return usage("generate: unknown option --" + k);
    }
  }
  const auto get = [&](const std::string& k, const std::string& d = "") {
    auto it = a.opts.find(k);
    return it == a.opts.end() ? d : it->second;
  };
  grat::v1::GenerateRequest req;
  req.set_prompt(get("prompt"));
  req.set_negative_prompt(get("negative"));
  req.set_model(get("model"));
  const std::string out = get("out");
  if (out.empty()) return usage("generate: --out FILE is required");
  long long v = 0;
  for (const char* k :
       {"width", "height", "frames", "fps", "steps", "radius", "full-steps", "priority"}) {
    const std::string s =
        get(k, std::string(k) == "width" || std::string(k) == "height" ? "256" : "0");
    if (!to_int(s, &v)) return usage(std::string("--") + k + " expects an integer");
    const std::string key = k;
    if (key == "width") req.set_width(static_cast<int32_t>(v));
    if (key == "height") req.set_height(static_cast<int32_t>(v));
    if (key == "frames") req.set_frames(static_cast<int32_t>(v));
    if (key == "fps") req.set_fps(static_cast<int32_t>(v));
    if (key == "steps") req.set_steps(static_cast<int32_t>(v));
    if (key == "radius") req.mutable_attention()->set_radius(static_cast<int32_t>(v));
    if (key == "full-steps") req.mutable_attention()->set_full_steps(static_cast<int32_t>(v));
    if (key == "priority") req.set_priority(static_cast<int32_t>(v));
  }
  if (a.opts.count("seed")) {
    char* end = nullptr;
    const std::string s = get("seed");
    const unsigned long long seed = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || *end) return usage("--seed expects a non-negative integer");
    req.set_seed(seed);
  }
  if (a.opts.count("guidance")) req.set_guidance(std::strtof(get("guidance").c_str(), nullptr));
  const std::string mode = get("attention", "auto");
  static const std::map<std::string, grat::v1::AttentionMode> modes = {
      {"auto", grat::v1::ATTENTION_MODE_AUTO}, {"full", grat::v1::ATTENTION_MODE_FULL},
      {"B", grat::v1::ATTENTION_MODE_B},       {"b", grat::v1::ATTENTION_MODE_B},
      {"X", grat::v1::ATTENTION_MODE_X},       {"x", grat::v1::ATTENTION_MODE_X}};
  if (!modes.count(mode)) return usage("--attention expects auto, full, B or X");
  req.mutable_attention()->set_mode(modes.at(mode));
  if (a.opts.count("group")) {
    const std::string g = get("group");
    size_t pos = 0;
    while (pos <= g.size()) {
      const size_t x = g.find('x', pos);
      const std::string part = g.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
      if (!to_int(part, &v)) return usage("--group expects HxW or TxHxW (e.g. 4x4, 2x4x4)");
      req.mutable_attention()->add_group(static_cast<int32_t>(v));
      if (x == std::string::npos) break;
      pos = x + 1;
    }
  }
  static const std::map<std::string, grat::v1::OutputFormat> formats = {
      {"png", grat::v1::OUTPUT_FORMAT_PNG},
      {"webp", grat::v1::OUTPUT_FORMAT_WEBP},
      {"mp4", grat::v1::OUTPUT_FORMAT_MP4}};
  if (a.opts.count("format")) {
    if (!formats.count(get("format"))) return usage("--format expects png, webp or mp4");
    req.set_format(formats.at(get("format")));
  } else {
    // From the extension of --out; anything else: the model's default (PNG, or MP4 for video).
    const auto dot = out.rfind('.');
    std::string ext = dot == std::string::npos ? "" : out.substr(dot + 1);
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (out.find('/', dot == std::string::npos ? 0 : dot) == std::string::npos &&
        formats.count(ext)) {
      req.set_format(formats.at(ext));
    }
  }
  req.set_preview(a.opts.count("preview") > 0);
  const bool quiet = a.opts.count("quiet") > 0;

  grpc::ClientContext ctx;
  authorize(ctx);
  if (a.opts.count("timeout")) {
    const double t = std::strtod(get("timeout").c_str(), nullptr);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(t * 1e6)));
  }
  auto reader = stub.Generate(&ctx, req);
  grat::v1::GenerateEvent ev;
  std::string data, mime, job_id;
  int32_t next_index = 0;
  bool last_seen = false, bar_open = false;
  grat::v1::Finished finished;
  bool have_finished = false;
  while (reader->Read(&ev)) {
    switch (ev.event_case()) {
      case grat::v1::GenerateEvent::kAccepted:
        job_id = ev.accepted().job_id();
        if (!quiet) std::fprintf(stderr, "job %s accepted\n", job_id.c_str());
        break;
      case grat::v1::GenerateEvent::kQueued:
        if (!quiet) {
          std::fprintf(stderr, "queued at position %lld\n",
                       static_cast<long long>(ev.queued().position()));
        }
        break;
      case grat::v1::GenerateEvent::kStarted:
        if (!quiet) {
          std::fprintf(stderr, "started on %s (batch of %lld)\n", ev.started().device().c_str(),
                       static_cast<long long>(ev.started().batch_size()));
        }
        break;
      case grat::v1::GenerateEvent::kProgress:
        if (!quiet) {
          progress_bar(ev.progress().step(), ev.progress().total());
          bar_open = true;
        }
        break;
      case grat::v1::GenerateEvent::kResultChunk: {
        const auto& c = ev.result_chunk();
        if (c.index() != next_index++) {
          std::fprintf(stderr, "\nerror: result chunk %d out of order\n", c.index());
          ctx.TryCancel();
          return 1;
        }
        data += c.data();
        mime = c.mime_type();
        last_seen = c.last();
        break;
      }
      case grat::v1::GenerateEvent::kFinished:
        finished = ev.finished();
        have_finished = true;
        break;
      default:
        break;
    }
  }
  if (bar_open) std::fputc('\n', stderr);
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return fail(s);
  if (!last_seen || !have_finished) {
    std::fprintf(stderr, "error: the stream ended without a complete result\n");
    return 1;
  }
  std::ofstream f(out, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!f.good()) {
    std::fprintf(stderr, "gratctl: cannot write %s\n", out.c_str());
    return 2;
  }
  const auto& t = finished.timings();
  if (mime.rfind("video/", 0) == 0) {
    std::printf("wrote %s (%zu bytes, %s, %dx%d, %d frames at %d fps)\n", out.c_str(), data.size(),
                mime.c_str(), finished.width(), finished.height(), finished.frames(),
                finished.fps());
  } else {
    std::printf("wrote %s (%zu bytes, %s, %dx%d)\n", out.c_str(), data.size(), mime.c_str(),
                finished.width(), finished.height());
  }
  std::printf("job_id %s\nseed %llu\nsteps %d guidance %.3g attention %s\n",
              finished.job_id().c_str(), static_cast<unsigned long long>(finished.seed()),
              finished.steps(), finished.guidance(), finished.attention().c_str());
  std::printf(
      "timings: queue %.3fs text %.3fs denoise %.3fs (first step %.3fs) decode %.3fs encode "
      "%.3fs total %.3fs\n",
      t.queue_wait_s(), t.text_encode_s(), t.denoise_s(), t.first_step_s(), t.decode_s(),
      t.encode_s(), t.total_s());
  return 0;
}

int models(grat::v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  authorize(ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grat::v1::ListModelsResponse resp;
  const grpc::Status s = stub.ListModels(&ctx, grat::v1::ListModelsRequest(), &resp);
  if (!s.ok()) return fail(s);
  for (const auto& m : resp.models()) {
    const auto& l = m.limits();
    const auto& d = m.defaults();
    std::string devices, group;
    for (const auto& dev : m.devices()) devices += (devices.empty() ? "" : ",") + dev;
    for (int g : d.attention_group()) group += (group.empty() ? "" : "x") + std::to_string(g);
    std::printf("%s%s  %s/%s  devices=%s  ready=%s\n", m.name().c_str(),
                m.name() == resp.default_model() ? " (default)" : "", m.kind().c_str(),
                m.architecture().c_str(), devices.c_str(), m.ready() ? "yes" : "no");
    std::printf(
        "  sides %d..%d (multiple of %d), max_pixels %lld, steps %d..%d, max_frames %d, "
        "max_prompt_tokens %d\n",
        l.min_side(), l.max_side(), l.side_multiple(), static_cast<long long>(l.max_pixels()),
        l.min_steps(), l.max_steps(), l.max_frames(), l.max_prompt_tokens());
    std::printf("  defaults: steps %d, guidance %.3g, attention %s group %s radius %d\n", d.steps(),
                d.guidance(), d.attention_pattern().c_str(), group.c_str(), d.attention_radius());
    if (m.kind() == "video") {
      std::printf(
          "  video: frames 4k+1 up to %d, frames x width x height up to %lld "
          "(max_video_pixels), fps 1..60; defaults: frames %d, fps %d; output video/mp4\n",
          l.max_frames(), static_cast<long long>(l.max_video_pixels()), d.frames(), d.fps());
    }
    std::printf("  max_queue %d, max_batch %d\n", m.max_queue(), m.max_batch());
  }
  return 0;
}

// grpc.health.v1.Health/Check through the generic stub: HealthCheckRequest{string service=1},
// HealthCheckResponse{ServingStatus status=1} (UNKNOWN 0, SERVING 1, NOT_SERVING 2,
// SERVICE_UNKNOWN 3), hand-encoded to keep the client free of extra generated code.
int health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  std::string req;
  if (!service.empty()) {
    req.push_back('\x0a');
    size_t n = service.size();
    while (n >= 0x80) {
      req.push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    req.push_back(static_cast<char>(n));
    req += service;
  }
  grpc::Slice slice(req);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  authorize(ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", in, &cq);
  call->StartCall();
  grpc::Status s;
  call->Finish(&out, &s, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!s.ok()) return fail(s);
  std::vector<grpc::Slice> slices;
  out.Dump(&slices);
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  int status = 0;
  if (bytes.size() >= 2 && bytes[0] == '\x08') status = static_cast<unsigned char>(bytes[1]);
  static const char* names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  std::printf("%s\n", status >= 0 && status <= 3 ? names[status] : "UNKNOWN");
  return status == 1 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server;
  if (const char* env = std::getenv("GRAT_SERVER"); env && *env) server = env;
  if (server.empty()) server = "localhost:50051";
  if (const char* env = std::getenv("GRAT_TOKEN"); env && *env) g_token = env;
  bool tls = false;
  std::string ca;
  int i = 1;
  while (i < argc && std::string(argv[i]).rfind("--", 0) == 0) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") return usage(""), 0;
    if (a == "--server" && i + 1 < argc) {
      server = argv[i + 1];
      i += 2;
    } else if (a.rfind("--server=", 0) == 0) {
      server = a.substr(9);
      i += 1;
    } else if (a == "--tls") {
      tls = true;
      i += 1;
    } else if (a == "--ca" && i + 1 < argc) {
      ca = argv[i + 1];
      tls = true;
      i += 2;
    } else if (a == "--token" && i + 1 < argc) {
      g_token = argv[i + 1];
      i += 2;
    } else {
      return usage("unknown option " + a);
    }
  }
  if (i >= argc) return usage("missing command");
  const std::string cmd = argv[i];
  Args args;
  std::string err;
  if (!parse(argc, argv, i + 1, &args, &err)) return usage(err);

  grpc::ChannelArguments ch_args;
  ch_args.SetMaxReceiveMessageSize(16 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions o;
    if (!ca.empty()) {
      std::ifstream in(ca);
      std::stringstream pem;
      pem << in.rdbuf();
      if (!in || pem.str().empty()) return usage("--ca: cannot read '" + ca + "'");
      o.pem_root_certs = pem.str();
    }
    creds = grpc::SslCredentials(o);
  }
  auto channel = grpc::CreateCustomChannel(server, creds, ch_args);
  auto stub = grat::v1::Generation::NewStub(channel);
  if (cmd == "generate") return generate(*stub, args);
  if (cmd == "cancel") {
    if (args.positional.size() != 1) return usage("cancel JOB_ID");
    grpc::ClientContext ctx;
    authorize(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grat::v1::CancelJobRequest req;
    req.set_job_id(args.positional[0]);
    grat::v1::CancelJobResponse resp;
    const grpc::Status s = stub->CancelJob(&ctx, req, &resp);
    if (!s.ok()) return fail(s);
    std::printf("cancelled %s\n", args.positional[0].c_str());
    return 0;
  }
  if (cmd == "models") return models(*stub);
  if (cmd == "health") return health(channel, args.positional.empty() ? "" : args.positional[0]);
  return usage("unknown command '" + cmd + "'");
}
