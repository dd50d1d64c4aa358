# The embedding example (examples/embed): two models compiled ahead of time
# with `dlc -o NAME.so`, linked into one C program that trains, saves,
# reloads, predicts and checks the API's error handling.
set(EMBED_DIR ${CMAKE_CURRENT_BINARY_DIR}/embed)
file(MAKE_DIRECTORY ${EMBED_DIR})
foreach(model xor_mlp linreg)
  add_custom_command(
    OUTPUT ${EMBED_DIR}/${model}.so ${EMBED_DIR}/${model}.h
    COMMAND $<TARGET_FILE:dlc> ${CMAKE_SOURCE_DIR}/examples/${model}.dl -o ${EMBED_DIR}/${model}.so
    DEPENDS dlc dlrt ${CMAKE_SOURCE_DIR}/examples/${model}.dl
    COMMENT "dlc ${model}.dl -o ${model}.so")
endforeach()
add_custom_target(embed_models DEPENDS ${EMBED_DIR}/xor_mlp.so ${EMBED_DIR}/linreg.so)
add_executable(embed_demo ${CMAKE_SOURCE_DIR}/examples/embed/main.c)
add_dependencies(embed_demo embed_models)
target_include_directories(embed_demo PRIVATE ${EMBED_DIR})
foreach(model xor_mlp linreg)
  add_library(embed_${model} SHARED IMPORTED)
  set_target_properties(embed_${model} PROPERTIES IMPORTED_LOCATION ${EMBED_DIR}/${model}.so
                                                  IMPORTED_SONAME ${model}.so)
  target_link_libraries(embed_demo PRIVATE embed_${model})
endforeach()
set_target_properties(embed_demo PROPERTIES BUILD_RPATH ${EMBED_DIR})
add_test(NAME embed COMMAND embed_demo ${EMBED_DIR}/xor.safetensors)
# a library runs under dlrun exactly like its source: identical losses
add_test(NAME embed_dlrun_same_losses
         COMMAND sh -c "$<TARGET_FILE:dlrun> train ${EMBED_DIR}/xor_mlp.so --data xor --epochs 20 --quiet | sed 's/|[^|]*samples.*//' > ${EMBED_DIR}/so.txt && $<TARGET_FILE:dlrun> train ${CMAKE_SOURCE_DIR}/examples/xor_mlp.dl --data xor --epochs 20 --quiet | sed 's/|[^|]*samples.*//' > ${EMBED_DIR}/dl.txt && cmp ${EMBED_DIR}/so.txt ${EMBED_DIR}/dl.txt")
# ldd shows only libc, libm, the OpenMP runtime and the loader
add_test(NAME embed_ldd
         COMMAND sh -c "ldd ${EMBED_DIR}/xor_mlp.so | grep -v -E 'linux-vdso|libc\\.so|libm\\.so|libgomp|libomp|ld-linux' | grep . && exit 1 || exit 0")
# `dlc -o` (tests/aot/aot_test.sh): an object links with plain
# `cc main.c model.o -lm -fopenmp` (it holds the runtime, with only the C API
# global), two models' objects link into one program, reserved model names
# are user errors, and dlc needs neither the source nor the build tree.
foreach(group link_o two_models reserved self_contained)
  set(name aot.${group})
  if(group STREQUAL "link_o" OR group STREQUAL "two_models")
    set(name embed_o.${group})
  endif()
  add_test(NAME ${name}
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/aot/aot_test.sh ${group} $<TARGET_FILE:dlc> ${CMAKE_C_COMPILER}
                   ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/aot)
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
  if(DLC_SANITIZE)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "DLC_TEST_LINK_FLAGS=-fsanitize=address,undefined")
  endif()
endforeach()
