// civetweb (under prometheus-cpp's Exposer) starts its threads with a fixed 100 KiB stack, and
// glibc carves every library's static thread-local storage out of each thread's stack. The
// CUDA libraries LibTorch loads bring ~200 KiB of it (cuBLASLt alone 92 KiB), so those
// pthread_create calls failed with EINVAL and the Exposer "would not start inside the server".
// This executable-level definition of pthread_attr_setstacksize gives civetweb's requests room
// for the TLS on top; every other caller gets glibc's behaviour unchanged.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <cstring>

namespace {

int add_tls(dl_phdr_info* info, size_t, void* total) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_TLS)
      *static_cast<size_t*>(total) += info->dlpi_phdr[i].p_memsz;
  }
  return 0;
}

bool from_civetweb(const void* caller) {
  Dl_info info{};
  return dladdr(caller, &info) != 0 && info.dli_fname != nullptr &&
         std::strstr(info.dli_fname, "civetweb") != nullptr;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (from_civetweb(__builtin_return_address(0))) {
    size_t tls = 0;
    dl_iterate_phdr(add_tls, &tls);  // libraries loaded so far; 64 KiB for later ones
    size += tls + 64 * 1024;
  }
  return real(attr, size);
}

namespace grat::server {
// Referenced from metrics.cpp so that linking the Exposer links this file too.
bool civetweb_stack_fix_linked() { return true; }
}  // namespace grat::server
