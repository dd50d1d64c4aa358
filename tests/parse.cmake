# parse.cmake — tests of the textual IR parsers (included by
# tests/CMakeLists.txt): the cmocka round-trip / malformed-input / diagnostics
# tests, and per conformance case a check that `dlrun step` on the model
# written out as .dlir (`dlc --emit=grad`, and `--emit=opt`) gives the same
# loss as on the .dl. Run with -P this file is that check's script:
#   cmake -DDLC=.. -DDLRUN=.. -DCASE=DIR -DKIND=grad|opt -DWORK=DIR -P parse.cmake
if(CMAKE_SCRIPT_MODE_FILE)
  file(MAKE_DIRECTORY ${WORK})
  set(dlir ${WORK}/model.${KIND}.dlir)
  execute_process(COMMAND ${DLC} ${CASE}/model.dl --emit=${KIND} -o ${dlir} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "dlc --emit=${KIND} failed (${rc})")
  endif()
  foreach(model ${CASE}/model.dl ${dlir})
    execute_process(COMMAND ${DLRUN} step ${model} --params ${CASE}/params.safetensors
                            --feed ${CASE}/feed.safetensors
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "dlrun step ${model} failed (${rc}): ${err}")
    endif()
    string(REGEX MATCH "loss [^\n]*" loss "${out}")
    list(APPEND losses "${loss}")
    message(STATUS "${model}: ${loss}")
  endforeach()
  list(GET losses 0 want)
  list(GET losses 1 got)
  if(NOT want OR NOT got STREQUAL want)
    message(FATAL_ERROR "the .dlir gives '${got}', the .dl '${want}'")
  endif()
  return()
endif()

add_executable(test_parse test_parse.c)
target_link_libraries(test_parse dlc_driver dlc_ir dlrt cmocka m)
set(DLC_PARSE_CONFORMANCE_DIR ${CMAKE_SOURCE_DIR}/../shared/conformance)
add_test(NAME parse COMMAND test_parse ${CMAKE_SOURCE_DIR} ${DLC_PARSE_CONFORMANCE_DIR})
foreach(case linreg mlp_momentum logistic_adamw)
  if(EXISTS ${DLC_PARSE_CONFORMANCE_DIR}/${case}/model.dl)
    foreach(kind grad opt)
      add_test(NAME parse.dlrun_step.${kind}.${case}
               COMMAND ${CMAKE_COMMAND} -DDLC=$<TARGET_FILE:dlc> -DDLRUN=$<TARGET_FILE:dlrun>
                       -DCASE=${DLC_PARSE_CONFORMANCE_DIR}/${case} -DKIND=${kind}
                       -DWORK=${CMAKE_CURRENT_BINARY_DIR}/parse_step/${case}
                       -P ${CMAKE_CURRENT_LIST_FILE})
    endforeach()
  endif()
endforeach()
