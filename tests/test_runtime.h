/* test_runtime.h — shared declarations of the runtime test groups. */
#ifndef TEST_RUNTIME_H
#define TEST_RUNTIME_H
int run_core_tests(void);
int run_st_tests(void);
int run_data_tests(void);
#endif
