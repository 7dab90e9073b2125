// The packed products of cpp/src/kernels/recurrent.hpp against a naive triple loop, for float and double,
// compiled and run once per instruction set (kernels.cmake): pack_transposed and pack_columns (the
// layout, zero padding included), panel_product (accumulating and overwriting) and panel_gemm.
// Shapes are the awkward ones: every row count the tile split handles (1 to 9, and 17), column counts
// around the packet width W and the block width kPanel, depths around kDepth, leading dimensions wider
// than the operands. Then the header's claim that a result depends on the values alone, not on memory
// alignment, nor on how rows and columns are sliced between threads: bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/recurrent.hpp"

namespace lstm_fast::test {
namespace {

using detail::kDepth;
using detail::kPanel;
using detail::Simd;

// Column counts where a blocked kernel goes wrong: around the packet width and the block width.
template <typename T>
std::vector<Index> awkward_columns() {
  constexpr Index W = Simd<T>::kWidth, PW = kPanel<T>;
  std::vector<Index> n = {1, W - 1, W, W + 1, PW - 1, PW, PW + 1, 2 * PW + W + 3, 3 * PW + 1};
  std::sort(n.begin(), n.end());
  n.erase(std::unique(n.begin(), n.end()), n.end());
  n.erase(std::remove(n.begin(), n.end(), Index(0)), n.end());
  return n;
}

const Index kRowCounts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
const Index kDepths[] = {1, 127, 128, 129, 300};

// Where P[k][j] of the panel of n columns over depth K lies, as recurrent.hpp documents the layout:
// blocks of kPanel columns, block j0 at P + j0 K in rows of kPanel, the last block in rows only as
// wide as the packets its columns need.
template <typename T>
Index panel_offset(Index n, Index K, Index k, Index j) {
  constexpr Index W = Simd<T>::kWidth, PW = kPanel<T>;
  const Index j0 = j / PW * PW;
  const Index width = n - j0 >= PW ? PW : (n - j0 + W - 1) / W * W;
  return j0 * K + k * width + (j - j0);
}

// The panel both packers must produce for B[k][j] = b(k, j): zeros wherever no column is.
template <typename T, typename B>
std::vector<T> expected_panel(Index n, Index K, B b) {
  constexpr Index W = Simd<T>::kWidth;
  std::vector<T> p(static_cast<size_t>((n + W - 1) / W * W * K), T(0));
  for (Index k = 0; k < K; ++k)
    for (Index j = 0; j < n; ++j) p[panel_offset<T>(n, K, k, j)] = b(k, j);
  return p;
}

template <typename T>
class Packing : public ::testing::Test {};
TYPED_TEST_SUITE(Packing, Precisions);

// A window [row0, row0 + n) x [col0, col0 + K) of a wider matrix W; the panel holds W^T.
TYPED_TEST(Packing, TransposedLayoutWithZeroPadding) {
  using T = TypeParam;
  for (Index n : awkward_columns<T>())
    for (Index K : {1, 5, 129}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << ", K " << K);
      const Index row0 = 3, col0 = 2, ldw = col0 + K + 7;
      const std::vector<T> w = random_values<T>((row0 + n + 2) * ldw, unsigned(n * 1000 + K));
      const Index size = detail::panel_size<T>(n, K);
      std::vector<T> p(static_cast<size_t>(size) + 1, quiet_nan<T>());  // NaN: every number must be written
      detail::pack_transposed(w.data(), ldw, row0, col0, n, K, p.data());
      EXPECT_TRUE(std::isnan(p.back())) << "wrote past panel_size";
      p.pop_back();
      EXPECT_TRUE(
          bitwise_equal(p, expected_panel<T>(n, K, [&](Index k, Index j) { return w[(row0 + j) * ldw + col0 + k]; })));
    }
}

// Columns [col0, col0 + n) of K rows of a wider matrix.
TYPED_TEST(Packing, ColumnsLayoutWithZeroPadding) {
  using T = TypeParam;
  for (Index n : awkward_columns<T>())
    for (Index K : {1, 5, 129}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << ", K " << K);
      const Index col0 = 5, ldw = col0 + n + 3;
      const std::vector<T> w = random_values<T>(K * ldw, unsigned(n * 1000 + K));
      const Index size = detail::panel_size<T>(n, K);
      std::vector<T> p(static_cast<size_t>(size) + 1, quiet_nan<T>());
      detail::pack_columns(w.data(), ldw, col0, n, K, p.data());
      EXPECT_TRUE(std::isnan(p.back())) << "wrote past panel_size";
      p.pop_back();
      EXPECT_TRUE(bitwise_equal(p, expected_panel<T>(n, K, [&](Index k, Index j) { return w[k * ldw + col0 + j]; })));
    }
}

// One product C[rows, cols] (+)= A[rows, K] B[K, cols] with its operands: A and C in wider rows
// (lda = K + 3, ldc = cols + 5), B packed from W^T (pack_transposed) or from W (pack_columns).
template <typename T>
struct Product {
  Index rows, cols, K, lda, ldc;
  std::vector<T> a, b, panel, c;  // b: [K, cols] dense, what the panel holds

  Product(Index rows_, Index cols_, Index K_, bool transposed, unsigned seed)
      : rows(rows_), cols(cols_), K(K_), lda(K_ + 3), ldc(cols_ + 5) {
    a = random_values<T>(rows * lda, seed);
    for (Index r = 0; r < rows; ++r)  // never read: NaN there would reach the results
      std::fill(a.begin() + r * lda + K, a.begin() + (r + 1) * lda, quiet_nan<T>());
    b = random_values<T>(K * cols, seed + 1);
    panel.resize(static_cast<size_t>(detail::panel_size<T>(cols, K)));
    if (transposed) {
      std::vector<T> w(static_cast<size_t>(cols * K));  // W = B^T, [cols, K]
      for (Index k = 0; k < K; ++k)
        for (Index j = 0; j < cols; ++j) w[j * K + k] = b[k * cols + j];
      detail::pack_transposed(w.data(), K, 0, 0, cols, K, panel.data());
    } else {
      detail::pack_columns(b.data(), cols, 0, cols, K, panel.data());
    }
    c = random_values<T>(rows * ldc, seed + 2);
  }

  template <bool kAccumulate, bool kGemm = false>
  void run(const T* a_, const T* panel_, T* c_) const {
    if constexpr (kGemm)
      detail::panel_gemm<kAccumulate>(rows, cols, K, a_, lda, panel_, c_, ldc);
    else
      detail::panel_product<kAccumulate>(rows, cols, K, a_, lda, panel_, c_, ldc);
  }
};

// Every output within the rounding bound of any summation order, (2K + 4) eps sum |terms| (each
// step of the chain rounds at most twice without FMA; Higham's gamma), and every number of C outside
// the product's columns untouched. `before` is C before the call (its product columns NaN when
// overwriting: they must not be read).
template <typename T>
::testing::AssertionResult matches_naive(const Product<T>& p, const std::vector<T>& before, const std::vector<T>& after,
                                         bool accumulate) {
  for (Index r = 0; r < p.rows; ++r)
    for (Index j = 0; j < p.ldc; ++j) {
      const size_t at = static_cast<size_t>(r * p.ldc + j);
      if (j >= p.cols) {
        if (std::memcmp(&after[at], &before[at], sizeof(T)) != 0)
          return ::testing::AssertionFailure() << "C[" << r << "][" << j << "] past the columns was changed";
        continue;
      }
      Wide<T> sum = accumulate ? Wide<T>(before[at]) : 0, magnitude = std::abs(sum);
      for (Index k = 0; k < p.K; ++k) {
        const Wide<T> term = Wide<T>(p.a[r * p.lda + k]) * Wide<T>(p.b[k * p.cols + j]);
        sum += term;
        magnitude += std::abs(term);
      }
      const Wide<T> error = std::abs(Wide<T>(after[at]) - sum);
      const Wide<T> bound = (2 * p.K + 4) * Wide<T>(kEpsilon<T>) * magnitude;
      if (!(error <= bound))
        return ::testing::AssertionFailure()
               << "C[" << r << "][" << j << "] = " << after[at] << ", naive " << double(sum) << " (error "
               << double(error) << " > " << double(bound) << ")";
    }
  return ::testing::AssertionSuccess();
}

template <typename T, bool kAccumulate, bool kGemm = false>
void check_product(Index rows, Index cols, Index K, bool transposed) {
  SCOPED_TRACE(::testing::Message() << "rows " << rows << ", cols " << cols << ", K " << K
                                    << (transposed ? ", pack_transposed" : ", pack_columns")
                                    << (kAccumulate ? ", accumulate" : ", overwrite"));
  Product<T> p(rows, cols, K, transposed, unsigned(rows * 7919 + cols * 131 + K));
  std::vector<T> before = p.c;
  if (!kAccumulate)
    for (Index r = 0; r < rows; ++r)
      std::fill(before.begin() + r * p.ldc, before.begin() + r * p.ldc + cols, quiet_nan<T>());
  std::vector<T> after = before;
  p.template run<kAccumulate, kGemm>(p.a.data(), p.panel.data(), after.data());
  EXPECT_TRUE(matches_naive(p, before, after, kAccumulate));
}

template <typename T>
class PanelProduct : public ::testing::Test {};
TYPED_TEST_SUITE(PanelProduct, Precisions);

TYPED_TEST(PanelProduct, AccumulatesTheNaiveProductAtTailShapes) {
  int n = 0;
  for (Index rows : kRowCounts)
    for (Index cols : awkward_columns<TypeParam>())
      for (Index K : kDepths) check_product<TypeParam, true>(rows, cols, K, ++n % 2 == 0);
}

TYPED_TEST(PanelProduct, OverwritesWithTheNaiveProductAtTailShapes) {
  int n = 0;
  for (Index rows : kRowCounts)
    for (Index cols : awkward_columns<TypeParam>())
      for (Index K : kDepths) check_product<TypeParam, false>(rows, cols, K, ++n % 2 == 1);
}

// panel_gemm cuts rows into blocks of kRowBlock (128): row counts around it and its multiples.
TYPED_TEST(PanelProduct, GemmMatchesTheNaiveProduct) {
  using T = TypeParam;
  for (Index rows : {1, 127, 128, 129, 300})
    for (Index cols : {Index(1), kPanel<T> + 1, 2 * kPanel<T> + Simd<T>::kWidth + 3})
      for (Index K : {Index(1), kDepth + 1}) {
        check_product<T, false, true>(rows, cols, K, true);
        check_product<T, true, true>(rows, cols, K, false);
      }
}

// ---- Results depend on the values alone ------------------------------------------------------------

template <typename T>
class PanelProductBits : public ::testing::Test {};
TYPED_TEST_SUITE(PanelProductBits, Precisions);

// A, the panel and C each moved off the alignment std::vector gives, by every shift below a packet.
TYPED_TEST(PanelProductBits, DoNotDependOnAlignment) {
  using T = TypeParam;
  for (Index cols : awkward_columns<T>()) {
    const Product<T> p(17, cols, 300, true, unsigned(cols));
    std::vector<T> want = p.c;
    p.template run<true>(p.a.data(), p.panel.data(), want.data());
    for (Index shift = 1; shift < Simd<T>::kWidth; ++shift) {
      Shifted<T> a(p.a, shift), panel(p.panel, shift), c(p.c, (shift * 3) % Simd<T>::kWidth);
      p.template run<true>(a.data(), panel.data(), c.data());
      EXPECT_TRUE(bitwise_equal(c.values(), want)) << "cols " << cols << ", shift " << shift;
    }
  }
}

// Each row alone (1-row tiles over several blocks) gives what the 17 rows together (8- and 4-row
// tiles) gave; so do panel_gemm's blocks of 128 rows against panel_product one row at a time.
TYPED_TEST(PanelProductBits, DoNotDependOnTheRowsComputedTogether) {
  using T = TypeParam;
  for (Index rows : {Index(17), Index(300)})
    for (Index cols : awkward_columns<T>()) {
      const Product<T> p(rows, cols, 129, false, unsigned(rows + cols));
      std::vector<T> together = p.c, alone = p.c;
      p.template run<false, true>(p.a.data(), p.panel.data(), together.data());
      for (Index r = 0; r < rows; ++r)
        detail::panel_product<false>(1, cols, p.K, p.a.data() + r * p.lda, p.lda, p.panel.data(),
                                     alone.data() + r * p.ldc, p.ldc);
      EXPECT_TRUE(bitwise_equal(alone, together)) << "rows " << rows << ", cols " << cols;
    }
}

// A slice of the output columns [j0, j1), packed on its own from rows j0.. of W as a team member
// packs its units (pack_transposed with row0 = j0), gives the slice of the whole product, whatever
// the bounds: on packet boundaries or not.
TYPED_TEST(PanelProductBits, DoNotDependOnColumnSliceBounds) {
  using T = TypeParam;
  constexpr Index W = Simd<T>::kWidth;
  const Index cols = 3 * kPanel<T> + W + 3, K = 300, rows = 9;
  const Product<T> p(rows, cols, K, true, 5);
  std::vector<T> w(static_cast<size_t>(cols * K));  // W = B^T
  for (Index k = 0; k < K; ++k)
    for (Index j = 0; j < cols; ++j) w[j * K + k] = p.b[k * cols + j];
  std::vector<T> whole = p.c;
  p.template run<true>(p.a.data(), p.panel.data(), whole.data());
  for (const std::vector<Index>& bounds :
       {std::vector<Index>{0, W, 2 * W, cols}, {0, 1, W + 1, kPanel<T> - 1, cols}, {0, cols - 1, cols}}) {
    std::vector<T> sliced = p.c;
    for (size_t s = 0; s + 1 < bounds.size(); ++s) {
      const Index j0 = bounds[s], n = bounds[s + 1] - j0;
      std::vector<T> panel(static_cast<size_t>(detail::panel_size<T>(n, K)));
      detail::pack_transposed(w.data(), K, j0, 0, n, K, panel.data());
      detail::panel_product<true>(rows, n, K, p.a.data(), p.lda, panel.data(), sliced.data() + j0, p.ldc);
    }
    EXPECT_TRUE(bitwise_equal(sliced, whole)) << "slice bounds from " << bounds[1];
  }
}

}  // namespace
}  // namespace lstm_fast::test
