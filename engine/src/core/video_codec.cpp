// MP4/H.264 through ffmpeg's libraries, muxed into memory (custom AVIO with seek, so the
// mp4 muxer can write its index at the end).
#include "grat/engine/codec.h"

#if GRAT_WITH_VIDEO
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#include <cstring>
#include <memory>
#include <mutex>
#endif

namespace grat::engine {

#if GRAT_WITH_VIDEO
namespace {

struct MemoryFile {
  std::string data;
  int64_t pos = 0;
};

// ffmpeg 6.1 (libavformat 61) made the write callback's buffer const.
#if LIBAVFORMAT_VERSION_MAJOR >= 61
using WriteBuffer = const uint8_t*;
#else
using WriteBuffer = uint8_t*;
#endif

int mem_write(void* opaque, WriteBuffer buf, int n) {
  auto* f = static_cast<MemoryFile*>(opaque);
  const auto end = static_cast<size_t>(f->pos) + static_cast<size_t>(n);
  if (end > f->data.size()) f->data.resize(end);
  std::memcpy(&f->data[static_cast<size_t>(f->pos)], buf, static_cast<size_t>(n));
  f->pos = static_cast<int64_t>(end);
  return n;
}

int64_t mem_seek(void* opaque, int64_t offset, int whence) {
  auto* f = static_cast<MemoryFile*>(opaque);
  const auto size = static_cast<int64_t>(f->data.size());
  if (whence == AVSEEK_SIZE) return size;
  int64_t p = offset;
  if ((whence & 3) == SEEK_CUR) p = f->pos + offset;
  if ((whence & 3) == SEEK_END) p = size + offset;
  if (p < 0) return AVERROR(EINVAL);
  f->pos = p;
  return p;
}

std::string av_error(int rc) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(rc, buf, sizeof buf);
  return buf;
}

void check(int rc, const char* what) {
  if (rc < 0) throw EncodeError(std::string("mp4: ") + what + ": " + av_error(rc));
}

// Owners for the libav objects so every exit path frees them.
struct Cleanup {
  AVFormatContext* fmt = nullptr;
  AVIOContext* io = nullptr;
  AVCodecContext* enc = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* pkt = nullptr;
  SwsContext* sws = nullptr;
  ~Cleanup() {
    sws_freeContext(sws);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    if (fmt) avformat_free_context(fmt);
    if (io) {
      av_freep(&io->buffer);
      avio_context_free(&io);
    }
  }
};

void drain(Cleanup& c, AVStream* st, bool flush) {
  check(avcodec_send_frame(c.enc, flush ? nullptr : c.frame), "send frame");
  while (true) {
    const int rc = avcodec_receive_packet(c.enc, c.pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    check(rc, "receive packet");
    // One frame per packet: without a duration the muxer's edit list ends at the last frame's
    // start and players drop that frame (ffprobe read 16 of 17).
    if (c.pkt->duration == 0) c.pkt->duration = 1;
    av_packet_rescale_ts(c.pkt, c.enc->time_base, st->time_base);
    c.pkt->stream_index = st->index;
    check(av_interleaved_write_frame(c.fmt, c.pkt), "write frame");
  }
}

}  // namespace

bool video_encoding_available() { return true; }

std::string encode_mp4(const uint8_t* frames, size_t bytes, int frame_count, int width, int height,
                       int fps, int crf) {
  if (frame_count < 1 || width < 2 || height < 2 || width % 2 || height % 2) {
    throw EncodeError("mp4: need >= 1 frame and even width/height; got " +
                      std::to_string(frame_count) + " frames of " + std::to_string(width) + "x" +
                      std::to_string(height));
  }
  const size_t frame_bytes = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  if (bytes != frame_bytes * static_cast<size_t>(frame_count)) {
    throw EncodeError("mp4: frame buffer has " + std::to_string(bytes) + " bytes, expected " +
                      std::to_string(frame_bytes * frame_count));
  }
  // libx264 reports every encode at info level on stderr: a server's log wants errors only.
  static std::once_flag quiet;
  std::call_once(quiet, [] { av_log_set_level(AV_LOG_ERROR); });
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (codec == nullptr) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
  if (codec == nullptr) throw EncodeError("mp4: this ffmpeg build has no H.264 encoder");

  MemoryFile file;
  Cleanup c;
  check(avformat_alloc_output_context2(&c.fmt, nullptr, "mp4", nullptr), "output context");
  auto* iobuf = static_cast<uint8_t*>(av_malloc(1 << 16));
  c.io = avio_alloc_context(iobuf, 1 << 16, 1, &file, nullptr, mem_write, mem_seek);
  if (c.io == nullptr) throw EncodeError("mp4: out of memory");
  c.fmt->pb = c.io;
  c.fmt->flags |= AVFMT_FLAG_CUSTOM_IO;

  AVStream* st = avformat_new_stream(c.fmt, nullptr);
  c.enc = avcodec_alloc_context3(codec);
  if (st == nullptr || c.enc == nullptr) throw EncodeError("mp4: out of memory");
  c.enc->width = width;
  c.enc->height = height;
  c.enc->pix_fmt = AV_PIX_FMT_YUV420P;
  c.enc->time_base = AVRational{1, fps};
  c.enc->framerate = AVRational{fps, 1};
  c.enc->gop_size = fps;
  if (c.fmt->oformat->flags & AVFMT_GLOBALHEADER) c.enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  av_opt_set(c.enc->priv_data, "preset", "medium", 0);
  av_opt_set_int(c.enc->priv_data, "crf", crf, 0);
  check(avcodec_open2(c.enc, codec, nullptr), "open encoder");
  check(avcodec_parameters_from_context(st->codecpar, c.enc), "stream parameters");
  st->time_base = c.enc->time_base;
  check(avformat_write_header(c.fmt, nullptr), "write header");

  c.frame = av_frame_alloc();
  c.pkt = av_packet_alloc();
  if (c.frame == nullptr || c.pkt == nullptr) throw EncodeError("mp4: out of memory");
  c.frame->format = AV_PIX_FMT_YUV420P;
  c.frame->width = width;
  c.frame->height = height;
  check(av_frame_get_buffer(c.frame, 0), "frame buffer");
  c.sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC, nullptr, nullptr, nullptr);
  if (c.sws == nullptr) throw EncodeError("mp4: no RGB->YUV converter");
  for (int i = 0; i < frame_count; ++i) {
    check(av_frame_make_writable(c.frame), "frame writable");
    const uint8_t* src[1] = {frames + frame_bytes * static_cast<size_t>(i)};
    const int stride[1] = {width * 3};
    sws_scale(c.sws, src, stride, 0, height, c.frame->data, c.frame->linesize);
    c.frame->pts = i;
    drain(c, st, false);
  }
  drain(c, st, true);
  check(av_write_trailer(c.fmt), "write trailer");
  return std::move(file.data);
}

#else

bool video_encoding_available() { return false; }

std::string encode_mp4(const uint8_t*, size_t, int, int, int, int, int) {
  throw EncodeError("mp4: this build has no video encoding (ffmpeg libraries not found)");
}

#endif

}  // namespace grat::engine
