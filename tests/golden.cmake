# golden.cmake — golden IR tests: every tests/golden/PASS/*.dlir runs PASS (a
# graph pass on its graphs, or a kernel pass on its kernel program) and checks
# the printed result against its `; CHECK:` lines (tests/filecheck.c); the
# checker's self-test; and the pass manager's command-line tests
# (passes_cli.cmake). Included by tests/CMakeLists.txt.
add_executable(test_golden test_golden.c filecheck.c)
target_link_libraries(test_golden dlc_passes dlc_ir dlrt m)
add_test(NAME golden_filecheck_self_test COMMAND test_golden --self-test)
file(GLOB DLC_GOLDEN_CASES ${CMAKE_CURRENT_SOURCE_DIR}/golden/*/*.dlir)
foreach(case ${DLC_GOLDEN_CASES})
  get_filename_component(pass_dir ${case} DIRECTORY)
  get_filename_component(pass ${pass_dir} NAME)
  get_filename_component(name ${case} NAME_WE)
  add_test(NAME golden.${pass}.${name} COMMAND test_golden ${pass} ${case})
endforeach()

include(${CMAKE_CURRENT_LIST_DIR}/passes_cli.cmake)
