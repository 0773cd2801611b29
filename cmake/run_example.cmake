# Runs one example in a fresh, empty working folder and fails if it exits non-zero.
#   cmake -DEXAMPLE=<program> -DWORKDIR=<folder> -P run_example.cmake
file(REMOVE_RECURSE "${WORKDIR}")
file(MAKE_DIRECTORY "${WORKDIR}")
get_filename_component(name "${EXAMPLE}" NAME)
message("\n== ${name}")
execute_process(COMMAND "${EXAMPLE}" WORKING_DIRECTORY "${WORKDIR}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${name} failed (exit status: ${status})")
endif()
