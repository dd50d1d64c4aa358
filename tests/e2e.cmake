# End-to-end tests: the conformance cases of ../shared/conformance (and the
# regression cases of tests/conformance) through
# `dlrun step` (at -O2 and -O0), and the examples trained on built-in data.
add_executable(test_conformance test_conformance.c)
target_link_libraries(test_conformance PRIVATE dlrt m)

# Cases with convolutions again with every stride-1 convolution on the
# padded image in place (DLC_CONV_FLAT=1) and with none (=0: im2col), since
# by default the choice depends on the shapes.
function(dlc_add_flat_conv_test name case)
  file(READ ${case}/model.dl src)
  if(src MATCHES "conv2d")
    add_test(NAME conv_flat.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O2)
    set_tests_properties(conv_flat.${name} PROPERTIES ENVIRONMENT "DLC_CONV_FLAT=1" TIMEOUT 120)
    add_test(NAME conv_im2col.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O2)
    set_tests_properties(conv_im2col.${name} PROPERTIES ENVIRONMENT "DLC_CONV_FLAT=0" TIMEOUT 120)
  endif()
endfunction()

set(DLC_CONFORMANCE_DIR ${CMAKE_SOURCE_DIR}/../shared/conformance CACHE PATH "conformance cases")
file(GLOB DLC_CONFORMANCE_CASES LIST_DIRECTORIES true ${DLC_CONFORMANCE_DIR}/*)
# the suite must run them: without them, a failing test that says where
# they were looked for (not a suite that passes with them missing)
if(NOT DLC_CONFORMANCE_CASES)
  add_test(NAME conformance.missing
           COMMAND sh -c "echo 'no conformance cases in ${DLC_CONFORMANCE_DIR}: clone dlc beside ../shared or configure with -DDLC_CONFORMANCE_DIR=DIR' >&2; exit 1")
endif()
foreach(case ${DLC_CONFORMANCE_CASES})
  if(EXISTS ${case}/model.dl)
    get_filename_component(name ${case} NAME)
    add_test(NAME conformance.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O2)
    add_test(NAME conformance_O0.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O0)
    dlc_add_flat_conv_test(${name} ${case})
  endif()
endforeach()

# Regression cases in the same format (tests/conformance/NAME): models on
# which the differential check tools/refcheck found a bug, made by
# `tools/refcheck/gen_cases.py --regression NAME --out tests/conformance`.
# A timeout, since some of those bugs made the compiler loop.
file(GLOB DLC_REGRESSION_CASES LIST_DIRECTORIES true ${CMAKE_CURRENT_SOURCE_DIR}/conformance/*)
foreach(case ${DLC_REGRESSION_CASES})
  if(EXISTS ${case}/model.dl)
    get_filename_component(name ${case} NAME)
    add_test(NAME regression.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O2)
    add_test(NAME regression_O0.${name} COMMAND test_conformance $<TARGET_FILE:dlrun> ${case} -O0)
    set_tests_properties(regression.${name} regression_O0.${name} PROPERTIES TIMEOUT 120)
    dlc_add_flat_conv_test(${name} ${case})
  endif()
endforeach()

# -O0 and -O2 give the same training step on every example and conformance model
add_executable(test_opt_levels test_opt_levels.c)
target_link_libraries(test_opt_levels PRIVATE dlc_driver m)
file(GLOB DLC_EXAMPLE_MODELS ${CMAKE_SOURCE_DIR}/examples/*.dl)
foreach(model ${DLC_EXAMPLE_MODELS} ${DLC_CONFORMANCE_CASES} ${DLC_REGRESSION_CASES})
  if(IS_DIRECTORY ${model} OR ${model} MATCHES "/conformance/")
    set(model ${model}/model.dl)
    get_filename_component(dir ${model} DIRECTORY)
    get_filename_component(name ${dir} NAME)
    set(name conformance.${name})
  else()
    get_filename_component(name ${model} NAME_WE)
    set(name example.${name})
  endif()
  if(EXISTS ${model})
    add_test(NAME opt_levels.${name} COMMAND test_opt_levels ${model})
    # models with convolutions: the per-image fused backward is bit-identical
    file(READ ${model} src)
    if(src MATCHES "conv2d")
      add_test(NAME image_fusion.${name} COMMAND test_opt_levels --image-fusion ${model})
      # every convolution through im2col, so that there is something to fuse
      set_tests_properties(image_fusion.${name} PROPERTIES ENVIRONMENT "DLC_CONV_FLAT=0")
      # ... and the default paths: the crops after padded-width products
      add_test(NAME image_fusion_flat.${name} COMMAND test_opt_levels --image-fusion ${model})
    endif()
    # models with convolutions: implicit im2col and im2col agree (each way
    # for every convolution against the default choice)
    if(src MATCHES "conv2d" AND name MATCHES "^example")
      add_test(NAME conv_paths.${name}.im2col COMMAND test_opt_levels --env DLC_CONV_FLAT=0 ${model})
      add_test(NAME conv_paths.${name}.implicit COMMAND test_opt_levels --env DLC_CONV_FLAT=1 ${model})
      # ... and the column-shifted copies give the im2col's products bit for bit
      add_test(NAME conv_paths.${name}.shift COMMAND test_opt_levels --bitwise DLC_CONV_SHIFT=0 ${model})
      # ... and the bias gradients summed image-major give the nest's sums bit for bit
      add_test(NAME channel_sums.${name} COMMAND test_opt_levels --bitwise DLC_CHANNEL_SUMS=0 ${model})
      set_tests_properties(conv_paths.${name}.shift PROPERTIES ENVIRONMENT "DLC_CONV_FLAT=0")
    endif()
    # models with max pooling: its adjoint as a scatter agrees with the gather
    if(src MATCHES "maxpool2d")
      add_test(NAME pool_scatter.${name} COMMAND test_opt_levels --env DLC_POOL_SCATTER=0 ${model})
      # ... and the pooling rows in vector registers are the scalar nest's, bit for bit
      add_test(NAME pool_rows.${name} COMMAND test_opt_levels --bitwise DLC_POOL_ROWS=0 ${model})
    endif()
  endif()
endforeach()
