# End-to-end tests: the conformance cases of ../shared/conformance through
# `dlrun step` (at -O2 and -O0), and the examples trained on built-in data.
add_executable(test_conformance test_conformance.c)
target_link_libraries(test_conformance PRIVATE dlrt m)

set(DLC_CONFORMANCE_DIR ${CMAKE_SOURCE_DIR}/../shared/conformance CACHE PATH "conformance cases")
file(GLOB DLC_CONFORMANCE_CASES LIST_DIRECTORIES true ${DLC_CONFORMANCE_DIR}/*)
foreach(case ${DLC_CONFORMANCE_CASES})
  if(EXISTS ${case}/model.dl)
    get_filename_component(name ${case} NAME)
    add_test(NAME conformance.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O2)
    add_test(NAME conformance_O0.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O0)
  endif()
endforeach()
