# Tests of grat_engine_core (included from tests/CMakeLists.txt).
set(_dir ${CMAKE_CURRENT_LIST_DIR})
find_package(nlohmann_json REQUIRED)
add_executable(grat_engine_core_tests
  ${_dir}/test_flow_match.cpp
  ${_dir}/test_manifest.cpp
  ${_dir}/test_codec.cpp)
target_link_libraries(grat_engine_core_tests PRIVATE grat_engine_core nlohmann_json::nlohmann_json
  PNG::PNG GTest::gtest GTest::gmock GTest::gtest_main)
target_compile_options(grat_engine_core_tests PRIVATE ${GRAT_WARNINGS})
target_compile_definitions(grat_engine_core_tests PRIVATE GRAT_HAVE_VIDEO=$<BOOL:${GRAT_HAVE_VIDEO}>)
set(_out ${CMAKE_CURRENT_BINARY_DIR}/engine_core)

# Expected schedules from diffusers' own scheduler.
add_test(NAME engine_sigmas_reference
  COMMAND ${Python3_EXECUTABLE} ${_dir}/make_sigmas_reference.py ${_out}/sigmas.json)
set_tests_properties(engine_sigmas_reference PROPERTIES FIXTURES_SETUP sigmas LABELS "cpu")
add_test(NAME engine_core_unit COMMAND grat_engine_core_tests)
set_tests_properties(engine_core_unit PROPERTIES FIXTURES_REQUIRED sigmas FIXTURES_SETUP codec_files
  LABELS "cpu" ENVIRONMENT
  "GRAT_SIGMAS_JSON=${_out}/sigmas.json;GRAT_CODEC_DIR=${_out}/codec;GRAT_TINY_VIDEO_BUNDLE=${GRAT_TINY_VIDEO_BUNDLE}")
# The encoded files, decoded by independent decoders (Pillow, ffprobe).
add_test(NAME engine_codec_decode
  COMMAND ${Python3_EXECUTABLE} ${_dir}/check_codec_outputs.py ${_out}/codec)
set_tests_properties(engine_codec_decode PROPERTIES FIXTURES_REQUIRED codec_files LABELS "cpu")

# The engine on the tiny bundle; its PNG/WebP outputs are then decoded by Pillow.
add_executable(grat_engine_tests ${_dir}/test_engine.cpp ${_dir}/test_attention_policy.cpp
  ${_dir}/test_engine_video.cpp ${_dir}/test_step_graphs.cpp)
target_link_libraries(grat_engine_tests PRIVATE grat_engine PNG::PNG GTest::gtest GTest::gmock
  GTest::gtest_main)
# test_step_graphs.cpp: StepGraphs is the pipeline's own (engine/src/pipeline/step_graph.h).
target_include_directories(grat_engine_tests PRIVATE ${CMAKE_SOURCE_DIR}/engine/src/pipeline)
target_compile_options(grat_engine_tests PRIVATE ${GRAT_WARNINGS})
add_test(NAME engine_pipeline COMMAND grat_engine_tests)
set_tests_properties(engine_pipeline PROPERTIES FIXTURES_SETUP engine_files LABELS "cpu"
  ENVIRONMENT
  "GRAT_TINY_BUNDLE=${GRAT_TINY_BUNDLE};GRAT_TINY_VIDEO_BUNDLE=${GRAT_TINY_VIDEO_BUNDLE};GRAT_ENGINE_OUT=${_out}/engine")
add_test(NAME engine_outputs_decode
  COMMAND ${Python3_EXECUTABLE} -c
    "from PIL import Image; import sys; d=sys.argv[1]; a=Image.open(d+'/engine.png'); b=Image.open(d+'/engine.webp'); a.load(); b.load(); assert a.size==(192,128) and a.format=='PNG', a; assert b.size==(192,128) and b.format=='WEBP', b; print('ok')"
    ${_out}/engine)
set_tests_properties(engine_outputs_decode PROPERTIES FIXTURES_REQUIRED engine_files LABELS "cpu")
# The engine's MP4 clips, read back by ffprobe / ffmpeg (frames, size, fps, batch = single).
if(GRAT_HAVE_VIDEO)
  add_test(NAME engine_video_outputs_decode
    COMMAND ${Python3_EXECUTABLE} ${_dir}/check_video_outputs.py ${_out}/engine)
  set_tests_properties(engine_video_outputs_decode PROPERTIES FIXTURES_REQUIRED engine_files
    LABELS "cpu")
endif()
# CUDA graphs in the engine on a CUDA device (label gpu: `ctest -L gpu` on a CUDA host; the
# tests skip themselves where no device is visible).
if(GRAT_HAVE_CUDA)
  add_executable(grat_engine_gpu_tests ${_dir}/test_engine_graphs_gpu.cpp)
  target_link_libraries(grat_engine_gpu_tests PRIVATE grat_engine PNG::PNG GTest::gtest
    GTest::gmock GTest::gtest_main)
  target_compile_options(grat_engine_gpu_tests PRIVATE ${GRAT_WARNINGS})
  add_test(NAME engine_graphs_gpu COMMAND grat_engine_gpu_tests)
  set_tests_properties(engine_graphs_gpu PROPERTIES LABELS "gpu"
    ENVIRONMENT "GRAT_TINY_BUNDLE=${GRAT_TINY_BUNDLE}")
endif()
