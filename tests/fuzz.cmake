# fuzz.cmake — the fuzz harness (tests/fuzz/fuzz_compile.c). fuzz_replay runs
# the example models, the diagnostics cases, every example's --emit text and
# the inputs fuzzing found (tests/fuzz/corpus, when there are any: add each
# finding there with its fix) through the front half of the compiler in
# every build; with -DDLC_FUZZ=ON (clang) fuzz_dlc is the libFuzzer target
# (README: "Fuzzing").
add_executable(fuzz_replay fuzz/fuzz_compile.c)
target_link_libraries(fuzz_replay PRIVATE dlc_driver)
set(DLC_FUZZ_FOUND "")
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus)
  set(DLC_FUZZ_FOUND ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus)
endif()
add_test(NAME fuzz.replay COMMAND fuzz_replay ${DLC_FUZZ_FOUND} ${CMAKE_SOURCE_DIR}/examples
                                  ${CMAKE_CURRENT_SOURCE_DIR}/diag)
# kernel programs and graphs as text: every example's --emit=ir/grad/opt
add_test(NAME fuzz.replay_dlir
         COMMAND bash -c "set -e; d=$(mktemp -d); trap 'rm -rf $d' EXIT; \
                          for f in \"$1\"/*.dl; do n=$(basename \"$f\" .dl); \
                            for e in ir grad opt; do \"$2\" \"$f\" --emit=$e -o $d/$n.$e.dlir; done; done; \
                          DLC_FUZZ_EXT=dlir \"$3\" $d"
                 bash ${CMAKE_SOURCE_DIR}/examples $<TARGET_FILE:dlc> $<TARGET_FILE:fuzz_replay>)
if(DLC_FUZZ)
  add_executable(fuzz_dlc fuzz/fuzz_compile.c)
  target_compile_definitions(fuzz_dlc PRIVATE DLC_FUZZ_LIBFUZZER)
  target_link_libraries(fuzz_dlc PRIVATE dlc_driver)
  target_link_options(fuzz_dlc PRIVATE -fsanitize=fuzzer)
endif()
