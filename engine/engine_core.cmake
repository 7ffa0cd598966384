# grat_engine_core: the model-independent parts of the engine (schedules, manifest,
# encoders). Included from the top-level CMakeLists.
find_package(PkgConfig)  # optional: GPU hosts may lack pkg-config
find_package(yaml-cpp REQUIRED)
find_package(PNG REQUIRED)
find_path(WEBP_INCLUDE_DIR webp/encode.h REQUIRED)
find_library(WEBP_LIBRARY webp REQUIRED)
add_library(grat_webp INTERFACE)
target_include_directories(grat_webp INTERFACE ${WEBP_INCLUDE_DIR})
target_link_libraries(grat_webp INTERFACE ${WEBP_LIBRARY})
option(GRAT_WITH_VIDEO "MP4 output through ffmpeg's libraries when found" ON)
set(GRAT_HAVE_VIDEO OFF)
if(GRAT_WITH_VIDEO AND PkgConfig_FOUND)
  pkg_check_modules(LIBAV IMPORTED_TARGET libavcodec libavformat libavutil libswscale)
  if(LIBAV_FOUND)
    set(GRAT_HAVE_VIDEO ON)
  endif()
endif()
message(STATUS "GRAT: MP4 output ${GRAT_HAVE_VIDEO}")

set(_core ${CMAKE_CURRENT_LIST_DIR}/src/core)
add_library(grat_engine_core STATIC
  ${_core}/flow_match.cpp
  ${_core}/manifest.cpp
  ${_core}/image_codec.cpp
  ${_core}/video_codec.cpp)
# grat/pattern.h (header-only): the pattern names and request limits the kernels define.
target_include_directories(grat_engine_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include
  ${CMAKE_CURRENT_LIST_DIR}/../kernels/include)
target_link_libraries(grat_engine_core PUBLIC yaml-cpp PNG::PNG grat_webp)
target_compile_options(grat_engine_core PRIVATE ${GRAT_WARNINGS})
set_target_properties(grat_engine_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
if(GRAT_HAVE_VIDEO)
  target_compile_definitions(grat_engine_core PRIVATE GRAT_WITH_VIDEO=1)
  target_link_libraries(grat_engine_core PRIVATE PkgConfig::LIBAV)
endif()

# grat_engine: the generation pipeline over a loaded bundle (LibTorch, tokenizers, kernels).
set(_pipe ${CMAKE_CURRENT_LIST_DIR}/src/pipeline)
add_library(grat_engine STATIC
  ${_pipe}/attention_policy.cpp
  ${_pipe}/cuda_step_graph.cpp
  ${_pipe}/engine.cpp
  ${_pipe}/family.cpp
  ${_pipe}/flux_family.cpp
  ${_pipe}/hunyuan_family.cpp
  ${_pipe}/pipeline.cpp
  ${_pipe}/step_graph.cpp)
target_include_directories(grat_engine PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(grat_engine PUBLIC grat_engine_core grat_graph_cache grat_tokenizers
  grat_kernels)
target_compile_options(grat_engine PRIVATE ${GRAT_WARNINGS})
set_target_properties(grat_engine PROPERTIES POSITION_INDEPENDENT_CODE ON)
