# runtime.cmake — the runtime's cmocka tests (included by tests/CMakeLists.txt).
add_executable(test_runtime test_runtime.c test_runtime_st.c test_runtime_data.c)
target_link_libraries(test_runtime dlrt dlrt_data cmocka m)
add_test(NAME runtime COMMAND test_runtime)
