# The kernel tests, compiled once per instruction set as the library's kernel sources are (the top-level
# CMakeLists.txt's LSTM_FAST_KERNEL_SOURCES: forward.cpp, backward.cpp, frozen_kernels.cpp, ..., built into
# lstm_fast_cell_<isa>): test_kernels_<isa> from kernels/test_*.cpp with that set's flags, plus
# isa_guard.cpp compiled without them (it checks the CPU before any code built with the flags runs).
# Sets kernel_isas (the sets built) and, when none could be, kernel_reason.
#
# The sets, their flags and the Eigen definitions are cmake/isas.cmake's, the library's one list: in-tree
# the top-level CMakeLists.txt has included it already; against an installed package it is read from
# the package's CMake folder (lstm_fast_isas.cmake), the list the installed library was built with.
if(NOT DEFINED LSTM_FAST_ISAS)
  include(${lstm_fast_DIR}/lstm_fast_isas.cmake)
endif()

set(kernel_isas "")
set(kernel_reason "")
if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.4 CONFIG)
endif()
if(NOT GTest_FOUND)
  set(kernel_reason "${gtest_reason}")
elseif(NOT TARGET Eigen3::Eigen)
  set(kernel_reason "Eigen 3.4 was not found by CMake (pip install cmeel-eigen and pass its cmeel.prefix in ")
  string(APPEND kernel_reason "CMAKE_PREFIX_PATH, or install libeigen3-dev): the kernel tests were not built")
  message(WARNING "${kernel_reason}")
else()
  file(GLOB kernel_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.cpp)
  # The frozen products' kernels as frozen_kernels.cpp compiles them (no multiply-add fused behind their
  # back), and so their oracles: int8 is checked bit for bit.
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/test_frozen_operands.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_frozen_products.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
  # The C++ list of the sets and what the CPU must have for each (isa_guard.cpp), as dispatch.cpp's.
  lstm_fast_write_isa_header(${CMAKE_CURRENT_BINARY_DIR}/kernels/generated/cell/isas.hpp)
  foreach(isa IN LISTS LSTM_FAST_ISAS)
    add_library(kernel_isa_guard_${isa} OBJECT ${CMAKE_CURRENT_LIST_DIR}/isa_guard.cpp)
    target_compile_definitions(kernel_isa_guard_${isa} PRIVATE LSTM_FAST_TEST_ISA=${isa})
    target_include_directories(kernel_isa_guard_${isa} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/kernels/generated)
    add_executable(test_kernels_${isa} ${kernel_tests} $<TARGET_OBJECTS:kernel_isa_guard_${isa}>)
    target_compile_features(test_kernels_${isa} PRIVATE cxx_std_17)
    target_include_directories(test_kernels_${isa} BEFORE PRIVATE ${LSTM_FAST_SOURCE_DIR}/cpp/src
      ${LSTM_FAST_SOURCE_DIR}/cpp/include ${CMAKE_CURRENT_LIST_DIR} ${CMAKE_CURRENT_BINARY_DIR}/kernels/generated)
    # As the library's per-ISA build of its kernel sources, lstm_fast_cell_<isa> (see the top-level
    # CMakeLists.txt for why each definition).
    target_compile_definitions(test_kernels_${isa} PRIVATE LSTM_FAST_TEST_ISA=${isa} LSTM_FAST_ISA=${isa}
      Eigen=lstm_fast_eigen_${isa}
      ${LSTM_FAST_EIGEN_DEFINITIONS})
    target_compile_options(test_kernels_${isa} PRIVATE ${LSTM_FAST_FLAGS_${isa}})
    # lstm_fast::lstm_fast for its interface (the sanitizer flags of a LSTM_FAST_SANITIZE build) and for the
    # packing of the frozen weights (weights/frozen.cpp, compiled once for every set): the kernels
    # themselves are header templates, compiled here with the set's flags.
    target_link_libraries(test_kernels_${isa} PRIVATE Eigen3::Eigen lstm_fast::lstm_fast GTest::gtest_main)
    add_test(NAME test_kernels_${isa} COMMAND test_kernels_${isa})
    set_tests_properties(test_kernels_${isa} PROPERTIES SKIP_RETURN_CODE 77)
    list(APPEND kernel_isas ${isa})
  endforeach()
endif()
