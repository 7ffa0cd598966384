# Sanitizer builds of the threaded code, as extra targets of the normal build (CI runs them
# with the other tests): ThreadSanitizer over the scheduler and its fake-executor tests, and
# AddressSanitizer + UBSan over the server (its and the scheduler's sources instrumented; the
# engine, LibTorch and gRPC are not) driven by the fuzz and video end-to-end tests.
option(GRAT_SANITIZER_TESTS "Build and run the sanitizer variants of the scheduler and server"
       ON)
if(NOT GRAT_SANITIZER_TESTS OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  return()
endif()

set(_sched_src ${CMAKE_SOURCE_DIR}/scheduler/src/scheduler.cpp)
add_executable(grat_scheduler_tsan_tests ${_sched_src}
  ${CMAKE_CURRENT_SOURCE_DIR}/scheduler/test_scheduler.cpp)
target_include_directories(grat_scheduler_tsan_tests PRIVATE ${CMAKE_SOURCE_DIR}/scheduler/include
  ${CMAKE_SOURCE_DIR}/engine/include)
target_compile_options(grat_scheduler_tsan_tests PRIVATE -fsanitize=thread -g -O1)
target_link_options(grat_scheduler_tsan_tests PRIVATE -fsanitize=thread)
target_link_libraries(grat_scheduler_tsan_tests PRIVATE GTest::gtest GTest::gtest_main
  Threads::Threads)
add_test(NAME scheduler_tsan COMMAND grat_scheduler_tsan_tests)
set_tests_properties(scheduler_tsan PROPERTIES LABELS "cpu" TIMEOUT 600
  ENVIRONMENT "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")

if(NOT TARGET grat_server)
  return()
endif()
# The server's packages (their imported targets are scoped to server/).
find_package(gRPC CONFIG REQUIRED)
find_package(spdlog REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(yaml-cpp REQUIRED)
if(GRAT_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()
# A target's sources as absolute paths (taken from the target, so the lists stay in sync).
function(grat_sources_of target out)
  get_target_property(_files ${target} SOURCES)
  get_target_property(_dir ${target} SOURCE_DIR)
  list(TRANSFORM _files PREPEND "${_dir}/")
  set(${out} ${_files} PARENT_SCOPE)
endfunction()
grat_sources_of(grat_server _server_srcs)
grat_sources_of(grat_scheduler _scheduler_srcs)
# The server's and the scheduler's sources built with `flags` (engine, LibTorch, gRPC as is).
function(grat_sanitized_server name)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/server/src/main.cpp ${_server_srcs}
    ${_scheduler_srcs})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/server/include
    ${CMAKE_SOURCE_DIR}/scheduler/include ${CMAKE_SOURCE_DIR}/engine/include)
  target_compile_definitions(${name} PRIVATE GRAT_TEST_HOOKS=1)
  target_compile_options(${name} PRIVATE ${ARGN} -g -O1)
  target_link_options(${name} PRIVATE ${ARGN}
    "LINKER:--export-dynamic-symbol=pthread_attr_setstacksize")
  # LINK_ONLY: LibTorch's include folder has its own older protobuf headers (see server/).
  target_link_libraries(${name} PRIVATE grat_proto $<LINK_ONLY:grat_engine> spdlog::spdlog
    gRPC::grpc++_reflection prometheus-cpp::core prometheus-cpp::pull yaml-cpp
    OpenSSL::Crypto dl Threads::Threads)
  if(GRAT_HAVE_CUDA)
    target_compile_definitions(${name} PRIVATE GRAT_SERVER_CUDA=1)
    target_include_directories(${name} PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
    target_link_libraries(${name} PRIVATE CUDA::cudart)
  endif()
endfunction()
grat_sanitized_server(grat_server_asan -fsanitize=address,undefined -fno-omit-frame-pointer
  -fno-sanitize-recover=undefined)
# No ThreadSanitizer server: with Debian's uninstrumented gRPC and abseil every report (172
# over the concurrency and cancel tests, tried) is in gRPC's header-inlined callback code,
# whose synchronization happens inside the uninstrumented library. It needs a TSan-built gRPC.
# Leaks are not checked (LibTorch and gRPC keep process-lifetime allocations); container
# annotations need every library instrumented.
add_test(NAME server_e2e_fuzz_asan
  COMMAND ${Python3_EXECUTABLE} -m pytest -q -x -p no:cacheprovider
          ${CMAKE_CURRENT_SOURCE_DIR}/server/e2e/test_fuzz.py
          ${CMAKE_CURRENT_SOURCE_DIR}/server/e2e/test_video.py)
set_tests_properties(server_e2e_fuzz_asan PROPERTIES LABELS "cpu" TIMEOUT 900
  ENVIRONMENT "GRAT_SERVER_BIN=$<TARGET_FILE:grat_server_asan>;GRATCTL_BIN=$<TARGET_FILE:gratctl>;GRAT_TINY_BUNDLE=${GRAT_TINY_BUNDLE};GRAT_SHAPES_BUNDLE=${GRAT_SHAPES_BUNDLE};GRAT_TINY_VIDEO_BUNDLE=${GRAT_TINY_VIDEO_BUNDLE};GRAT_REPO=${CMAKE_SOURCE_DIR};GRAT_E2E_TMP=${CMAKE_CURRENT_BINARY_DIR}/e2e_asan_tmp;ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1")
