# cli.cmake — command-line tests of dlc and dlrun (tests/cli/cli_test.sh):
# diagnostics and exit statuses, dlrun step/train/eval end to end,
# checkpoints, every --emit kind on every example and conformance model, and
# an exact --emit=ir golden file (included by tests/CMakeLists.txt).
add_executable(st_tool cli/st_tool.c)
target_link_libraries(st_tool PRIVATE dlrt m)

if(NOT DEFINED DLC_CONFORMANCE_DIR)
  set(DLC_CONFORMANCE_DIR ${CMAKE_SOURCE_DIR}/../shared/conformance)
endif()
set(DLC_CLI_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_test.sh)
set(DLC_CLI_ARGS $<TARGET_FILE:dlc> $<TARGET_FILE:dlrun> $<TARGET_FILE:st_tool>
                 ${CMAKE_CURRENT_SOURCE_DIR}/cli ${CMAKE_SOURCE_DIR})
foreach(group errors dlrun_errors xor linreg checkpoint cache updates ir_golden bench views shift quiet)
  add_test(NAME cli.${group} COMMAND bash ${DLC_CLI_SCRIPT} ${group} ${DLC_CLI_ARGS})
endforeach()

file(GLOB DLC_CLI_EXAMPLES ${CMAKE_SOURCE_DIR}/examples/*.dl)
file(GLOB DLC_CLI_CONFORMANCE ${DLC_CONFORMANCE_DIR}/*/model.dl)
foreach(model ${DLC_CLI_EXAMPLES} ${DLC_CLI_CONFORMANCE})
  get_filename_component(name ${model} NAME_WE)
  if(name STREQUAL "model")
    get_filename_component(dir ${model} DIRECTORY)
    get_filename_component(name ${dir} NAME)
    set(name conformance.${name})
  endif()
  # LLVM's O3 pipeline takes minutes on the larger example CNNs: the examples
  # emit llvm/asm at -O0 only, the (small) conformance models also at -O2
  set(speed fast)
  if(name MATCHES "^conformance")
    set(speed "")
  endif()
  add_test(NAME cli.emit.${name} COMMAND bash ${DLC_CLI_SCRIPT} emit ${DLC_CLI_ARGS} ${model} ${speed})
endforeach()
