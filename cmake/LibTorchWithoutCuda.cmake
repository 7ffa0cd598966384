# LibTorch from the CUDA build of the torch wheel on a machine without the CUDA toolkit.
# TorchConfig.cmake refuses to configure there (it looks for the toolkit the wheel was built
# with), although the libraries load fine without a GPU; import the CPU-side libraries
# directly instead. Sets TORCH_LIBRARIES like find_package(Torch).
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c
    "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
  OUTPUT_VARIABLE _grat_torch OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _grat_rc)
if(NOT _grat_rc EQUAL 0)
  message(FATAL_ERROR "torch is not importable by ${Python3_EXECUTABLE}; run scripts/install_deps.sh")
endif()
string(REPLACE "\n" ";" _grat_torch "${_grat_torch}")
list(GET _grat_torch 0 GRAT_TORCH_DIR)
list(GET _grat_torch 1 GRAT_TORCH_CXX11_ABI)
add_library(grat_libtorch INTERFACE)
foreach(lib torch torch_cpu c10)
  find_library(GRAT_LIBTORCH_${lib} ${lib} PATHS ${GRAT_TORCH_DIR}/lib NO_DEFAULT_PATH REQUIRED)
  target_link_libraries(grat_libtorch INTERFACE ${GRAT_LIBTORCH_${lib}})
endforeach()
target_include_directories(grat_libtorch SYSTEM INTERFACE
  ${GRAT_TORCH_DIR}/include ${GRAT_TORCH_DIR}/include/torch/csrc/api/include)
target_compile_definitions(grat_libtorch INTERFACE _GLIBCXX_USE_CXX11_ABI=${GRAT_TORCH_CXX11_ABI})
set(TORCH_LIBRARIES grat_libtorch)
message(STATUS "GRAT: LibTorch imported from ${GRAT_TORCH_DIR} (no CUDA toolkit here)")
