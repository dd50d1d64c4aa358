# Example smoke tests: for every examples/*.dl, compile it (`dlc --emit=opt`)
# and train it for two short epochs (`dlrun train --epochs 2 --max-steps K`),
# checking that the training loss falls (tests/examples/train_loss_falls.sh).
# The dataset is the one in the example's header comment
# (`dlrun train examples/NAME.dl --data DATASET ...`); a new example is
# picked up at configure time without editing this file. Tests on
# Fashion-MNIST are SKIPPED when /usr/share/datasets/fashion-mnist is missing;
# they run on a subset of it (6400 training, 1000 test images) that the first
# of them writes into the build tree, since evaluating the full test set
# would cost more than the training steps.
#
# K per example (default 20) keeps the whole set at about two minutes with
# `ctest -j2`. Each run uses one thread: ctest -j runs tests side by side,
# and an oversubscribed OpenMP team is much slower than one thread.
get_filename_component(DLC_EXAMPLES_DIR ${CMAKE_CURRENT_LIST_DIR}/../examples ABSOLUTE)
set(DLC_EXAMPLE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/examples/train_loss_falls.sh)

set(DLC_EXAMPLE_STEPS_linreg 50)
set(DLC_EXAMPLE_STEPS_xor_mlp 1)          # the batch is the whole data set
set(DLC_EXAMPLE_STEPS_weight_decay 30)    # one full epoch of `spiral`
set(DLC_EXAMPLE_STEPS_perceptron 30)

file(GLOB DLC_EXAMPLE_MODELS CONFIGURE_DEPENDS ${DLC_EXAMPLES_DIR}/*.dl)
foreach(model ${DLC_EXAMPLE_MODELS})
  get_filename_component(name ${model} NAME_WE)
  file(STRINGS ${model} run_lines REGEX "dlrun train .*--data [a-z-]+")
  if(NOT run_lines)
    message(SEND_ERROR "examples/${name}.dl: its header comment has no "
                       "'dlrun train examples/${name}.dl --data DATASET' line")
    continue()
  endif()
  list(GET run_lines 0 run_line)
  string(REGEX MATCH "--data ([a-z-]+)" _ "${run_line}")
  set(data ${CMAKE_MATCH_1})
  if(DEFINED DLC_EXAMPLE_STEPS_${name})
    set(steps ${DLC_EXAMPLE_STEPS_${name}})
  else()
    set(steps 20)
  endif()
  add_test(NAME example.${name}
           COMMAND sh ${DLC_EXAMPLE_SCRIPT} $<TARGET_FILE:dlc> $<TARGET_FILE:dlrun>
                   ${model} ${data} ${steps} --threads 1)
  set_tests_properties(example.${name} PROPERTIES
                       SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS examples
                       ENVIRONMENT DLC_EXAMPLES_DATA=${CMAKE_CURRENT_BINARY_DIR}/examples-data/fashion-mnist-subset)
endforeach()
