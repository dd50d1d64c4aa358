# frontend.cmake — the frontend's tests (included by tests/CMakeLists.txt):
# cmocka unit tests for the lexer, parser and sema, and the diagnostics driver
# that checks the first error line of every tests/diag/*.dl.
foreach(t lexer parser sema)
  add_executable(test_${t} test_${t}.c)
  target_link_libraries(test_${t} dlc_frontend dlc_ir dlrt cmocka m)
  add_test(NAME frontend_${t} COMMAND test_${t})
endforeach()
target_compile_definitions(test_sema PRIVATE
  CONFORMANCE_DIR="${CMAKE_SOURCE_DIR}/../shared/conformance")

add_executable(test_diag test_diag.c)
target_link_libraries(test_diag dlc_frontend dlc_ir dlrt cmocka m)
target_compile_definitions(test_diag PRIVATE DIAG_DIR="${CMAKE_CURRENT_SOURCE_DIR}/diag")
add_test(NAME frontend_diag COMMAND test_diag ${CMAKE_CURRENT_SOURCE_DIR}/diag)
