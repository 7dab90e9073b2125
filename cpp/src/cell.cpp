// The cell kernels. Structure (the one the fast version keeps):
//   forward:  Z = X W_ih^T + b for all steps as one GEMM ("input projection"), then per step
//             one recurrent GEMM  Z_t += h_{t-1} W_hh^T  and one fused pointwise kernel;
//   backward: per step one fused pointwise kernel and one GEMM  dh_{t-1} = dZ_t W_hh;  after the
//             time loop the weight gradients and dX as single GEMMs over all steps.
// The recurrent products, the input projection and dX read their weights packed once per call
// (recurrent.hpp); the weight gradients are Eigen's GEMMs.
//
// This file is compiled once per instruction set (CMake sets LSTM_FAST_ISA and the -m flags), and with
// Eigen's namespace renamed per build (-DEigen=lstm_fast_eigen_<isa>): otherwise the linker would merge
// the identically named Eigen template instances of different builds and could run AVX2 code on a CPU
// without it.
#include "cell.hpp"
#include "gates.hpp"
#include "recurrent.hpp"
#include "team.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#ifndef LSTM_FAST_ISA
#define LSTM_FAST_ISA baseline
#endif
#define LSTM_FAST_STRINGIFY_(x) #x
#define LSTM_FAST_STRINGIFY(x) LSTM_FAST_STRINGIFY_(x)

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Map = Eigen::Map<Matrix<T>>;
template <typename T>
using ConstMap = Eigen::Map<const Matrix<T>>;
template <typename T>
using StridedMap = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMap = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

// A barrier for a team of threads that meet once or twice per time step: spins briefly (a step is
// microseconds), then yields so an oversubscribed machine still makes progress.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}
  void wait() {
    if (parties_ == 1) return;
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == parties_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins)
      if (spins > 4000) std::this_thread::yield();
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// Member k of a team of `parts` gets [split(n, k), split(n, k + 1)): boundaries on multiples of
// `align` (a SIMD width) so that only the last slice has a partial packet.
inline Index split(Index n, int parts, int k, Index align) {
  if (k >= parts) return n;
  const Index units = (n + align - 1) / align;
  return std::min(n, units * k / parts * align);
}

// What member k of a team owns: hidden units [u0, u1) (their four gates), on SIMD-width boundaries,
// and outputs [r0, r1) of h; without a projection (R == H) the two ranges coincide.
struct MemberSlice {
  Index u0, u1, r0, r1;
};

template <typename T>
MemberSlice member_slice(const CellDims& dims, int team, int k) {
  const Index H = dims.hidden_size, R = dims.output_size, W = Simd<T>::kWidth;
  const Index u0 = split(H, team, k, W), u1 = split(H, team, k + 1, W);
  if (!dims.projection) return {u0, u1, u0, u1};
  return {u0, u1, split(R, team, k, 1), split(R, team, k + 1, 1)};
}

// Runs member(k, n, barrier) for k = 0 .. n-1 on a Team (team.hpp): k = 0 on the caller's thread,
// the others on the pool's workers. n = team unless the system could not start enough threads;
// the members share the work whatever n is, so it is done either way.
template <typename Member>
void run_team(int team, const Member& member) {
  Team workers(team);
  SpinBarrier barrier(workers.size());
  workers.run([&](int k) { member(k, workers.size(), barrier); });
}

// Rows (sum of the steps' batch sizes) from which packing W_hh once per call (recurrent.hpp) beats
// Eigen's product on W_hh itself. Packing costs about four single-row steps (measured at H = 256);
// Eigen re-packs its operand on every step when a step has several rows, so B = 32 gains from
// T = 4, while B = 1 breaks even near T = 64.
constexpr Index kPackMinRows = 64;

// Inference projects a chunk of steps at a time, so the gate buffer is O(chunk * B * 4H) whatever T
// is: as many steps as keep it near kInferenceChunkNumbers (64 KiB in float, so the projection's
// output is still in L2 when the steps read it back), at least one, at most 64.
constexpr Index kInferenceChunkNumbers = 16384;
constexpr Index kInferenceChunkMaxSteps = 64;

// How a team shares the time steps. By default each member owns a slice of the hidden units, and the
// members meet at a barrier every step, because every unit's next step needs all of h. When the
// batch is big enough and the weights small enough to sit whole in each core's L2, each member
// instead owns rows of the batch (rows k, k + team, k + 2 team, ...: sequences sorted by length
// then share out evenly) and runs every unit of them: its rows depend on nothing else, so the time
// loop has no barrier at all, and no core reads h written by another. Each output element is the
// same FMA chain either way, so results do not change. Measured with 2 threads against the unit
// split, medians of three interleaved runs: inference small (T 100, B 32, I 64, H 128) 1.82 -> 1.53
// ms, long (T 1000, B 16, I 16, H 128) 7.7 -> 6.4 ms; long training 36.6 -> 29.7 ms.
constexpr Index kRowsPerMemberMin = 8;                   // a full AVX-512 tile
constexpr std::size_t kRowSplitWeightBytes = 512 << 10;  // W_ih and W_hh together

template <typename T>
bool split_rows(const CellDims& dims, Index B, int team, bool packing) {
  const std::size_t weights = sizeof(T) * static_cast<std::size_t>(4 * dims.hidden_size) *
                              static_cast<std::size_t>(dims.input_size + dims.output_size);
  return packing && team > 1 && !dims.projection && B >= kRowsPerMemberMin * team &&
         weights <= kRowSplitWeightBytes;
}

// Rows of [0, b) that member k of a team owns in the row split: k, k + team, ... (count of them).
inline Index rows_of(Index b, int team, int k) { return b > k ? (b - k + team - 1) / team : 0; }

template <typename T>
void cell_forward(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse,
                  const T* x, const T* h0, const T* c0, T* y, Index ldy, T* h_n, T* c_n,
                  CellTrace<T>* trace, int threads) {
  const Index I = dims.input_size, H = dims.hidden_size, R = dims.output_size, G = 4 * H;
  const Index B = s.batch, N = s.rows(), steps = s.steps();
  constexpr Index kWidth = Simd<T>::kWidth;

  ConstMap<T> W_ih(w.weight_ih, G, I);
  ConstMap<T> X(x, N, I);
  Eigen::Matrix<T, 1, Eigen::Dynamic> bias = Eigen::Matrix<T, 1, Eigen::Dynamic>::Zero(G);
  if (w.bias_ih) bias += ConstMap<T>(w.bias_ih, 1, G);
  if (w.bias_hh) bias += ConstMap<T>(w.bias_hh, 1, G);

  // The running state. h is double-buffered: step p reads hidden[p % 2] and writes hidden[(p+1) % 2],
  // so a thread never overwrites the h another thread's recurrent product is still reading. Rows not
  // active at a step carry their values over (packed-sequence semantics in both directions); c is
  // updated in place, each thread touching only its own units.
  Matrix<T> hidden[2] = {Matrix<T>(B, R), Matrix<T>(B, R)};
  Matrix<T> c(B, H);
  if (h0) hidden[0] = ConstMap<T>(h0, B, R); else hidden[0].setZero();
  if (c0) c = ConstMap<T>(c0, B, H); else c.setZero();
  Matrix<T> m;  // [B, H] o * tanh(c) before the projection
  if (dims.projection) m.resize(B, H);

  if (trace) {
    trace->gates.resize(static_cast<size_t>(N * G));
    trace->cell.resize(static_cast<size_t>(N * H));
    trace->cell_prev.resize(static_cast<size_t>(N * H));
    trace->hidden_prev.resize(static_cast<size_t>(N * R));
  }
  const Index chunk = trace ? std::max<Index>(steps, 1)
                            : std::clamp<Index>(kInferenceChunkNumbers / (B * G), 1, kInferenceChunkMaxSteps);
  Buffer<T> z_chunk;  // inference: pre-activations of one chunk of steps (allocated once, here)
  if (!trace) z_chunk.resize(static_cast<size_t>(std::min(chunk, steps) * B * G));

  // The team: member k owns hidden units [u0, u1) (all four gates of them, so its rows of W_hh stay
  // in its core's cache: the "persistent RNN" idea) and, with a projection, outputs [r0, r1).
  // Everything is allocated above: nothing in the team allocates or throws.
  const int team = static_cast<int>(std::max<Index>(1, std::min<Index>(threads, H / kWidth)));
  // W_hh packed once per call, member by member: for each gate the panel of W_hh[gate H + u0 + j][k]
  // (recurrent.hpp), 4 panel_size(n, R) numbers. The members' u0 are on packet boundaries, so member
  // k's panels start at 4 R u0. Worth it only over enough rows (see kPackMinRows); otherwise Eigen's
  // product on W_hh itself.
  // W_ih too, as one panel of all 4H columns for the input projection (panel_gemm), each member
  // packing its share of the column blocks; below kPackMinRows, Eigen's GEMM.
  const bool packing = N >= kPackMinRows;
  Buffer<T> packed(packing ? static_cast<size_t>(4 * panel_size<T>(H, R)) : 0);
  Buffer<T> packed_ih(packing ? static_cast<size_t>(panel_size<T>(G, I)) : 0);
  ConstMap<T> W_hh(w.weight_hh, G, R);
  // Member k's share of the column blocks of a panel of all 4H columns of W^T (W: [4H, K]) at P.
  auto pack_share = [&](int k, int team, const T* W, Index K, T* P) {
    const Index j0 = split(G, team, k, kPanel<T>), j1 = split(G, team, k + 1, kPanel<T>);
    pack_transposed(W, K, j0, 0, j1 - j0, K, P + j0 * K);
  };
  auto member = [&](int k, int team, SpinBarrier& barrier) {
    const auto [u0, u1, r0, r1] = member_slice<T>(dims, team, k);
    const Index n = u1 - u0, panel = panel_size<T>(n, R);
    const T* peep = dims.peephole ? w.weight_peep + u0 : nullptr;  // this member's p_i; rows H apart
    T* panels = packing ? packed.data() + 4 * R * u0 : nullptr;
    if (packing) {
      for (Index gate = 0; gate < 4; ++gate)
        pack_transposed(w.weight_hh, R, gate * H + u0, 0, n, R, panels + gate * panel);
      pack_share(k, team, w.weight_ih, I, packed_ih.data());
      barrier.wait();  // all of W_ih's panel before any member's projection
    }
    for (Index first = 0; first < steps; first += chunk) {
      const Index count = std::min(chunk, steps - first);
      // Steps of this chunk in processing order are p = first .. first+count-1; their rows are contiguous.
      const Index t_lo = reverse ? steps - first - count : first;
      const Index row0 = s.offsets[t_lo], rows = s.offsets[t_lo + count] - row0;
      T* z = trace ? trace->gates.data() + row0 * G : z_chunk.data();
      // Input projection: Z = X W_ih^T + b_ih + b_hh, one GEMM for the chunk.
      if (packing) {  // its rows shared out, all 4H columns of each
        const Index q0 = rows * k / team, q1 = rows * (k + 1) / team;
        Map<T> Z(z + q0 * G, q1 - q0, G);
        panel_gemm<false>(q1 - q0, G, I, x + (row0 + q0) * I, I, packed_ih.data(), Z.data(), G);
        Z.rowwise() += bias;
        barrier.wait();
      } else {
        // Few rows (a streaming step): each member projects the columns of its own units, reading
        // only its rows of W_ih (which stay in its core's cache from call to call); it is the only
        // one to read them, so no barrier.
        for (Index gate = 0; gate < 4; ++gate) {
          const Index col = gate * H + u0;
          StridedMap<T> Z(z + col, rows, n, Eigen::OuterStride<>(G));
          Z.noalias() = X.middleRows(row0, rows) * W_ih.middleRows(col, n).transpose();
          Z.rowwise() += bias.middleCols(col, n);
        }
      }

      for (Index p = first; p < first + count; ++p) {
        const Index t = reverse ? steps - 1 - p : p;
        const Index b = s.batch_sizes[t], row = s.offsets[t];
        const Matrix<T>& h = hidden[p & 1];
        Matrix<T>& h_next = hidden[(p + 1) & 1];
        if (b < B) h_next.block(b, r0, B - b, r1 - r0) = h.block(b, r0, B - b, r1 - r0);
        T* zt = z + (row - row0) * G;
        for (Index gate = 0; gate < 4; ++gate) {  // the recurrent GEMM, this member's units of each gate
          if (packing)
            panel_product<true>(b, n, R, h.data(), R, panels + gate * panel, zt + gate * H + u0, G);
          else
            Map<T>(zt, b, G).middleCols(gate * H + u0, n).noalias() +=
                h.topRows(b) * W_hh.middleRows(gate * H + u0, n).transpose();
        }
        if (trace) {
          Map<T>(trace->hidden_prev.data() + row * R, b, R).middleCols(r0, r1 - r0) = h.block(0, r0, b, r1 - r0);
          Map<T>(trace->cell_prev.data() + row * H, b, H).middleCols(u0, n) = c.block(0, u0, b, n);
        }
        T* out = dims.projection ? m.data() : h_next.data();  // [B, H]: o * tanh(c)
        for (Index r = 0; r < b; ++r) {
          T* zr = zt + r * G + u0;
          if (dims.peephole)
            gates_forward_units<true>(n, H, zr, c.data() + r * H + u0, out + r * H + u0, peep);
          else
            gates_forward_units<false>(n, H, zr, c.data() + r * H + u0, out + r * H + u0, peep);
        }
        if (trace) Map<T>(trace->cell.data() + row * H, b, H).middleCols(u0, n) = c.block(0, u0, b, n);
        if (dims.projection) {
          barrier.wait();  // every unit of m is needed for h_t = W_hr m_t
          ConstMap<T> W_hr(w.weight_hr, R, H);
          h_next.block(0, r0, b, r1 - r0).noalias() = m.topRows(b) * W_hr.middleRows(r0, r1 - r0).transpose();
        }
        StridedMap<T>(y + row * ldy, b, R, Eigen::OuterStride<>(ldy)).middleCols(r0, r1 - r0) =
            h_next.block(0, r0, b, r1 - r0);
        barrier.wait();  // h_t complete before the next step reads it
      }
    }
  };
  // The row split (see split_rows): member k runs rows k, k + team, ... of every step, all units;
  // W_ih and W_hh are each one panel of all 4H columns (in `packed_ih` and `packed`), packed by the
  // members together. No projection here (split_rows excludes it).
  auto member_rows = [&](int k, int team, SpinBarrier& barrier) {
    // One panel of all 4H columns: panel_size(4H, R) <= the 4 panel_size(H, R) the buffer holds.
    pack_share(k, team, w.weight_hh, R, packed.data());
    pack_share(k, team, w.weight_ih, I, packed_ih.data());
    barrier.wait();  // both panels whole before any member reads them; the only wait
    const Index stride = team;  // between a member's rows
    for (Index p = 0; p < steps; ++p) {
      const Index t = reverse ? steps - 1 - p : p;
      const Index b = s.batch_sizes[t], row = s.offsets[t];
      const Matrix<T>& h = hidden[p & 1];
      Matrix<T>& h_next = hidden[(p + 1) & 1];
      const Index active = rows_of(b, team, k);
      for (Index r = k + active * stride; r < B; r += stride) h_next.row(r) = h.row(r);  // ended: carried
      if (active == 0) continue;
      // z rows of this member at step t: rows k, k + team, ... of the step's block of 4H columns.
      T* zt = (trace ? trace->gates.data() + row * G : z_chunk.data()) + k * G;
      // The same operations in the same order as the unit split: x W_ih^T, + bias, + h W_hh^T.
      panel_product<false>(active, G, I, x + (row + k) * I, stride * I, packed_ih.data(), zt, stride * G);
      for (Index i = 0; i < active; ++i) Map<T>(zt + i * stride * G, 1, G) += bias;
      panel_product<true>(active, G, R, h.data() + k * R, stride * R, packed.data(), zt, stride * G);
      for (Index i = 0; i < active; ++i) {
        const Index r = k + i * stride;
        T* zr = zt + i * stride * G;
        if (trace) {
          std::copy(h.data() + r * R, h.data() + (r + 1) * R, trace->hidden_prev.data() + (row + r) * R);
          std::copy(c.data() + r * H, c.data() + (r + 1) * H, trace->cell_prev.data() + (row + r) * H);
        }
        if (dims.peephole)
          gates_forward_units<true>(H, H, zr, c.data() + r * H, h_next.data() + r * R, w.weight_peep);
        else
          gates_forward_units<false>(H, H, zr, c.data() + r * H, h_next.data() + r * R, w.weight_peep);
        if (trace) std::copy(c.data() + r * H, c.data() + (r + 1) * H, trace->cell.data() + (row + r) * H);
        std::copy(h_next.data() + r * R, h_next.data() + (r + 1) * R, y + (row + r) * ldy);
      }
    }
  };
  if (split_rows<T>(dims, B, team, packing))
    run_team(team, member_rows);
  else
    run_team(team, member);
  Map<T>(h_n, B, R) = hidden[steps & 1];
  Map<T>(c_n, B, H) = c;
}

template <typename T>
void cell_backward(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse,
                   const CellTrace<T>& trace, const T* x, const T* dy, Index ldy, const T* dh_n,
                   const T* dc_n, T* dx, bool accumulate_dx, T* dh0, T* dc0, const CellGrads<T>& g, int threads) {
  const Index I = dims.input_size, H = dims.hidden_size, R = dims.output_size, G = 4 * H;
  const Index B = s.batch, N = s.rows(), steps = s.steps();
  constexpr Index kWidth = Simd<T>::kWidth;

  ConstMap<T> W_ih(w.weight_ih, G, I);
  ConstMap<T> X(x, N, I);
  ConstMap<T> H_prev(trace.hidden_prev.data(), N, R);

  // Running gradients w.r.t. each row's latest state; a row not active at a step keeps its value,
  // mirroring the forward's running state.
  Matrix<T> dh(B, R), dc(B, H);
  if (dh_n) dh = ConstMap<T>(dh_n, B, R); else dh.setZero();
  if (dc_n) dc = ConstMap<T>(dc_n, B, H); else dc.setZero();
  // The [N, *] workspaces come from the library's recycled blocks (no page faults call after call).
  Buffer<T> dZ_buffer(static_cast<size_t>(N * G));
  Map<T> dZ(dZ_buffer.data(), N, G);  // gradient w.r.t. the gate pre-activations, all steps
  Matrix<T> dm;                       // [B, H] gradient w.r.t. m = o * tanh(c) (projection only)
  Buffer<T> dH_buffer, M_buffer;
  if (dims.projection) {
    dm.resize(B, H);
    dH_buffer.resize(static_cast<size_t>(N * R));
    M_buffer.resize(static_cast<size_t>(N * H));
  }
  Map<T> dH_total(dH_buffer.data(), dims.projection ? N : 0, R);  // [N, R] dh_t of every row (for dW_hr)
  Map<T> M(M_buffer.data(), dims.projection ? N : 0, H);          // [N, H] m_t = o * tanh(c_t) (for dW_hr)
  // Column sums go to aligned buffers of our own first: Eigen vectorizes a reduction from an
  // aligned address of its destination, so summing straight into the caller's array would round
  // differently depending on where that array lies.
  Matrix<T> db(1, G), dP(3, H);

  // The team, as in cell_forward: member k owns hidden units [u0, u1) for the gate kernel and
  // columns [r0, r1) of dh for the recurrent product dh_{t-1} = dZ_t W_hh. Without a projection the
  // two slices coincide, so a member reads only its own part of dh and one barrier per step
  // suffices (dZ_t complete before the product); a projection's dm = dh W_hr needs all of dh.
  // Everything is allocated above: nothing in the team allocates or throws.
  const int team = static_cast<int>(std::max<Index>(1, std::min<Index>(threads, H / kWidth)));
  // W_hh's columns packed once per call, member by member: the panel of W_hh[k][r0 + j] for the
  // member's outputs [r0, r1) (recurrent.hpp), panel_size(nr, 4H) < 4H (nr + W) numbers. With a
  // projection r0 need not be on a packet boundary, so member k's panel starts at 4H (r0 + k W).
  // W_ih too, as one panel of its I columns for dX = dZ W_ih (panel_gemm), each member packing its
  // share of the column blocks (the barrier after the time loop orders the packing before the use).
  const bool packing = N >= kPackMinRows;
  Buffer<T> packed(packing ? static_cast<size_t>(G * (R + team * kWidth)) : 0);
  Buffer<T> packed_ih(packing ? static_cast<size_t>(panel_size<T>(I, G)) : 0);
  ConstMap<T> W_hh(w.weight_hh, G, R);
  // Member k's share of the column blocks of a panel of all `cols` columns of W ([4H, cols]) at P.
  auto pack_share = [&](int k, int team, const T* W, Index cols, T* P) {
    const Index j0 = split(cols, team, k, kPanel<T>), j1 = split(cols, team, k + 1, kPanel<T>);
    pack_columns(W, cols, j0, j1 - j0, G, P + j0 * G);
  };
  // After the time loop (every dZ complete): the weight gradients and dX, single products over all
  // steps, their outputs shared out by rows; W_ih's panel for dX is packed by the members before.
  auto gradients = [&](int k, int team, SpinBarrier& barrier) {
    const auto [u0, u1, r0, r1] = member_slice<T>(dims, team, k);
    const Index n = u1 - u0;
    const Index g0 = split(G, team, k, kWidth), g1 = split(G, team, k + 1, kWidth);
    Map<T>(g.weight_ih, G, I).middleRows(g0, g1 - g0).noalias() = dZ.middleCols(g0, g1 - g0).transpose() * X;
    Map<T>(g.weight_hh, G, R).middleRows(g0, g1 - g0).noalias() = dZ.middleCols(g0, g1 - g0).transpose() * H_prev;
    db.middleCols(g0, g1 - g0) = dZ.middleCols(g0, g1 - g0).colwise().sum();
    const Index n0 = N * k / team, n1 = N * (k + 1) / team;
    Map<T> dX(dx + n0 * I, n1 - n0, I);
    if (packing && accumulate_dx)
      panel_gemm<true>(n1 - n0, I, G, dZ.data() + n0 * G, G, packed_ih.data(), dX.data(), I);
    else if (packing)
      panel_gemm<false>(n1 - n0, I, G, dZ.data() + n0 * G, G, packed_ih.data(), dX.data(), I);
    else if (accumulate_dx)
      dX.noalias() += dZ.middleRows(n0, n1 - n0) * W_ih;
    else
      dX.noalias() = dZ.middleRows(n0, n1 - n0) * W_ih;
    if (dims.projection) {
      // m_t = o * tanh(c_t), recomputed from the trace: dW_hr = dH^T M.
      ConstStridedMap<T> O(trace.gates.data() + 3 * H, N, H, Eigen::OuterStride<>(G));
      ConstMap<T> C(trace.cell.data(), N, H);
      M.middleRows(n0, n1 - n0) = O.middleRows(n0, n1 - n0).array() * C.middleRows(n0, n1 - n0).array().tanh();
      barrier.wait();  // all of M; each member takes its own outputs [r0, r1) of W_hr
      Map<T>(g.weight_hr, R, H).middleRows(r0, r1 - r0).noalias() = dH_total.middleCols(r0, r1 - r0).transpose() * M;
    }
    if (dims.peephole) {
      // dp_i = sum_rows dz_i * c_{t-1};  dp_f = sum_rows dz_f * c_{t-1};  dp_o = sum_rows dz_o * c_t.
      ConstMap<T> C(trace.cell.data(), N, H);
      ConstMap<T> C_prev(trace.cell_prev.data(), N, H);
      dP.block(0, u0, 1, n) = (dZ.middleCols(u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum();
      dP.block(1, u0, 1, n) = (dZ.middleCols(H + u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum();
      dP.block(2, u0, 1, n) = (dZ.middleCols(3 * H + u0, n).array() * C.middleCols(u0, n).array()).colwise().sum();
    }
  };
  auto member = [&](int k, int team, SpinBarrier& barrier) {
    const auto [u0, u1, r0, r1] = member_slice<T>(dims, team, k);
    const Index n = u1 - u0, nr = r1 - r0;
    T* panel = packing ? packed.data() + G * (r0 + k * kWidth) : nullptr;
    if (packing) {
      pack_columns(w.weight_hh, R, r0, nr, G, panel);
      pack_share(k, team, w.weight_ih, I, packed_ih.data());
    }
    const T* dm_all = dims.projection ? dm.data() : dh.data();  // [B, H]
    const T* peep = dims.peephole ? w.weight_peep + u0 : nullptr;  // this member's p_i; rows H apart
    // Steps in the reverse of the forward's processing order.
    for (Index q = steps - 1; q >= 0; --q) {
      const Index t = reverse ? steps - 1 - q : q;
      const Index b = s.batch_sizes[t], row = s.offsets[t];
      dh.block(0, r0, b, r1 - r0) +=
          ConstStridedMap<T>(dy + row * ldy, b, R, Eigen::OuterStride<>(ldy)).middleCols(r0, r1 - r0);
      if (dims.projection) {
        dH_total.block(row, r0, b, r1 - r0) = dh.block(0, r0, b, r1 - r0);
        barrier.wait();  // all of dh for dm = dh W_hr
        ConstMap<T> W_hr(w.weight_hr, R, H);
        dm.block(0, u0, b, n).noalias() = dh.topRows(b) * W_hr.middleCols(u0, n);
      }
      for (Index r = 0; r < b; ++r) {
        const Index at = (row + r) * G + u0;
        const T* cell = trace.cell.data() + (row + r) * H + u0;
        const T* cell_prev = trace.cell_prev.data() + (row + r) * H + u0;
        if (dims.peephole)
          gates_backward_units<true>(n, H, trace.gates.data() + at, cell, cell_prev, dm_all + r * H + u0,
                                     dc.data() + r * H + u0, dZ.data() + at, peep);
        else
          gates_backward_units<false>(n, H, trace.gates.data() + at, cell, cell_prev, dm_all + r * H + u0,
                                      dc.data() + r * H + u0, dZ.data() + at, peep);
      }
      barrier.wait();  // dZ_t complete (and, with a projection, every dm read of dh done)
      if (packing)
        panel_product<false>(b, nr, G, dZ.data() + row * G, G, panel, dh.data() + r0, R);
      else
        dh.block(0, r0, b, nr).noalias() = dZ.middleRows(row, b) * W_hh.middleCols(r0, nr);
    }
    barrier.wait();  // dZ of every step complete

    gradients(k, team, barrier);
  };
  // The row split (see split_rows; no projection): member k runs rows k, k + team, ... of every
  // step, all units, on one panel of all R columns of W_hh (in `packed`). The time loop has no wait.
  auto member_rows = [&](int k, int team, SpinBarrier& barrier) {
    // One panel of all R columns: panel_size(R, 4H) <= the 4H (R + team W) the buffer holds.
    pack_share(k, team, w.weight_hh, R, packed.data());
    pack_share(k, team, w.weight_ih, I, packed_ih.data());
    barrier.wait();  // W_hh's panel whole before any member's first product
    const Index stride = team;  // between a member's rows
    for (Index q = steps - 1; q >= 0; --q) {
      const Index t = reverse ? steps - 1 - q : q;
      const Index b = s.batch_sizes[t], row = s.offsets[t];
      const Index active = rows_of(b, team, k);
      for (Index i = 0; i < active; ++i) {
        const Index r = k + i * stride, at = (row + r) * G;
        dh.row(r) += ConstMap<T>(dy + (row + r) * ldy, 1, R);
        const T* cell = trace.cell.data() + (row + r) * H;
        const T* cell_prev = trace.cell_prev.data() + (row + r) * H;
        if (dims.peephole)
          gates_backward_units<true>(H, H, trace.gates.data() + at, cell, cell_prev, dh.data() + r * H,
                                     dc.data() + r * H, dZ.data() + at, w.weight_peep);
        else
          gates_backward_units<false>(H, H, trace.gates.data() + at, cell, cell_prev, dh.data() + r * H,
                                      dc.data() + r * H, dZ.data() + at, w.weight_peep);
      }
      if (active > 0)  // dh_{t-1} = dZ_t W_hh for this member's rows
        panel_product<false>(active, R, G, dZ.data() + (row + k) * G, stride * G, packed.data(), dh.data() + k * R,
                             stride * R);
    }
    barrier.wait();  // dZ of every step complete
    gradients(k, team, barrier);
  };
  if (split_rows<T>(dims, B, team, packing))
    run_team(team, member_rows);
  else
    run_team(team, member);

  Map<T>(dh0, B, R) = dh;
  Map<T>(dc0, B, H) = dc;
  if (w.bias_ih) {
    Map<T>(g.bias_ih, 1, G) = db;
    Map<T>(g.bias_hh, 1, G) = db;
  }
  if (dims.peephole) Map<T>(g.weight_peep, 3, H) = dP;
}

void step_rows(const CellDims& dims, const CellWeights<float>& w, const float* bias, Index B, const float* x,
               float* h, float* c, float* workspace) {
  using Vector = Eigen::Matrix<float, Eigen::Dynamic, 1>;
  const Index I = dims.input_size, H = dims.hidden_size, R = dims.output_size, G = 4 * H;
  ConstMap<float> W_ih(w.weight_ih, G, I);
  ConstMap<float> W_hh(w.weight_hh, G, R);
  float* z = workspace;  // [4H]
  float* m = z + G;      // [H], with a projection
  Eigen::Map<Vector> zv(z, G);
  for (Index r = 0; r < B; ++r) {
    float* hr = h + r * R;
    float* cr = c + r * H;
    // GEMVs on contiguous vectors work in place, without temporaries.
    zv.noalias() = W_ih * Eigen::Map<const Vector>(x + r * I, I);
    zv.noalias() += W_hh * Eigen::Map<const Vector>(hr, R);
    if (bias) zv += Eigen::Map<const Vector>(bias, G);
    float* out = dims.projection ? m : hr;  // h is overwritten only after W_hh h was read
    if (dims.peephole)
      gates_forward_row<true>(H, z, cr, out, w.weight_peep);
    else
      gates_forward_row<false>(H, z, cr, out, w.weight_peep);
    if (dims.projection)
      Eigen::Map<Vector>(hr, R).noalias() = ConstMap<float>(w.weight_hr, R, H) * Eigen::Map<const Vector>(m, H);
  }
}

double fma_throughput(double seconds) {
  using S = Simd<float>;
  constexpr int kChains = 12;  // more independent chains than FMA latency x ports, so throughput binds
  typename S::Packet acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = S::set1(1e-3f * float(i));
  const auto a = S::set1(0.999999f), b = S::set1(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  long long rounds = 0;
  do {
    for (int r = 0; r < 4096; ++r)
      for (int i = 0; i < kChains; ++i) acc[i] = S::madd(acc[i], a, b);
    rounds += 4096;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  float lanes[S::kWidth];
  float sum = 0.0f;
  for (int i = 0; i < kChains; ++i) {
    S::store(lanes, acc[i]);
    for (Index k = 0; k < S::kWidth; ++k) sum += lanes[k];
  }
  static volatile float sink;  // keeps the loop from being optimised away
  sink = sum;
  return double(rounds) * kChains * S::kWidth * 2.0 / elapsed / 1e9;
}

}  // namespace

const KernelTable kernel_table{LSTM_FAST_STRINGIFY(LSTM_FAST_ISA),
                               {&cell_forward<float>, &cell_backward<float>},
                               {&cell_forward<double>, &cell_backward<double>},
                               &step_rows,
                               &fma_throughput};

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
