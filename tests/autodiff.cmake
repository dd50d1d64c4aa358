# autodiff.cmake — tests of pass_autodiff, pass_optimizer and the reference
# interpreter (included by tests/CMakeLists.txt).
add_executable(test_autodiff test_autodiff.c)
target_link_libraries(test_autodiff dlc_passes dlc_interp dlc_ir dlrt cmocka m)
add_test(NAME autodiff COMMAND test_autodiff)
