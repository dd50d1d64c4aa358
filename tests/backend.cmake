# backend.cmake — the backend's cmocka tests (included by tests/CMakeLists.txt).
add_executable(test_backend test_backend.c)
target_link_libraries(test_backend dlc_backend dlc_ir dlrt cmocka m)
add_test(NAME backend COMMAND test_backend)
