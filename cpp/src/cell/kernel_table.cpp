// The table of this build's kernels (cell.hpp; compiled once per ISA: cell_kernel.hpp).
#include "cell/cell_kernel.hpp"

#define LSTM_FAST_STRINGIFY_(x) #x
#define LSTM_FAST_STRINGIFY(x) LSTM_FAST_STRINGIFY_(x)

namespace lstm_fast::detail::LSTM_FAST_ISA {

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AMX_BF16__)
constexpr DotInstructions kDot = DotInstructions::all_and_tiles();
#elif defined(__AVX512F__)
constexpr DotInstructions kDot = DotInstructions::all();
#else
constexpr DotInstructions kDot{};
#endif

// extern: a const at namespace scope would have internal linkage; dispatch.cpp declares it per set.
extern const KernelTable kernel_table{LSTM_FAST_STRINGIFY(LSTM_FAST_ISA),
                                      kDot,
                                      {&cell_forward<float>, &cell_backward<float>, Simd<float>::kWidth},
                                      {&cell_forward<double>, &cell_backward<double>, Simd<double>::kWidth},
                                      &frozen_forward,
                                      &fma_throughput,
                                      &dot_throughput,
                                      &round_bf16};

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
