# passes.cmake — tests of the graph passes (simplify, cse, dce), the rewrite
# helper and the pass pipeline: hand-built graphs, and every example and
# conformance model before and after the pipeline through the reference
# interpreter (included by tests/CMakeLists.txt).
add_executable(test_passes test_passes.c)
target_link_libraries(test_passes dlc_passes dlc_frontend dlc_interp dlc_ir dlrt cmocka m)
target_compile_definitions(test_passes PRIVATE
  EXAMPLES_DIR="${CMAKE_SOURCE_DIR}/examples"
  CONFORMANCE_DIR="${CMAKE_SOURCE_DIR}/../shared/conformance")
add_test(NAME passes COMMAND test_passes)
