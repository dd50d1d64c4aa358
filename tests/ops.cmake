# ops.cmake — every op of ir/ops.def compiled (lowering + LLVM JIT) and run
# through the runtime, checked against the reference interpreter: forward
# values, gradients and the SGD update, fused and unfused, and bit-identical
# results on 1, 2 and 3 threads (included by tests/CMakeLists.txt).
add_executable(test_ops_compiled test_ops_compiled.c)
target_link_libraries(test_ops_compiled dlc_driver dlc_interp dlc_passes dlc_backend dlc_ir dlrt cmocka m)
# generated code resolves dlrt_* symbols from the running process
set_target_properties(test_ops_compiled PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME ops_compiled COMMAND test_ops_compiled)
set_tests_properties(ops_compiled PROPERTIES TIMEOUT 900 ENVIRONMENT "OMP_NUM_THREADS=2")
# again with every stride-1 convolution through the padded image in place,
# and with none (the choice depends on the shapes otherwise)
add_test(NAME ops_compiled.conv_flat COMMAND test_ops_compiled)
set_tests_properties(ops_compiled.conv_flat PROPERTIES TIMEOUT 900 ENVIRONMENT "OMP_NUM_THREADS=2;DLC_CONV_FLAT=1")
add_test(NAME ops_compiled.conv_im2col COMMAND test_ops_compiled)
set_tests_properties(ops_compiled.conv_im2col PROPERTIES TIMEOUT 900 ENVIRONMENT "OMP_NUM_THREADS=2;DLC_CONV_FLAT=0")
