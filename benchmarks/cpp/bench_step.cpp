// Per-step latency of lstm_fast::Model::step at batch 1, beside the time it takes this machine just
// to read the model's weights once (the bound for a step that must read every weight).
//
//   bench_step MODEL.safetensors [min_seconds]
// prints one JSON line: {"step_us", "weight_bytes", "read_us", "read_GBps", "dram_GBps"}.
//   read_us:   one pass of a streaming sum over a buffer of weight_bytes (kept warm, so it runs at the
//              bandwidth of the cache level - or memory - that holds weights of that size);
//   dram_GBps: the same sum over 512 MiB, i.e. main-memory read bandwidth.
#include <lstm_fast/lstm_fast.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Median over `repeats` runs of the time per call of `fn`, each run at least `min_run` seconds long.
template <typename F>
double median_seconds_per_call(F&& fn, double min_run, int repeats) {
  long calls = 1;
  for (;;) {  // calibrate the calls per run
    const auto t0 = Clock::now();
    for (long k = 0; k < calls; ++k) fn();
    if (seconds_since(t0) >= min_run) break;
    calls *= 2;
  }
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    for (long k = 0; k < calls; ++k) fn();
    times.push_back(seconds_since(t0) / static_cast<double>(calls));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

volatile std::uint64_t g_sink;

// Reads every byte once: integer adds (vectorizable without float reassociation) into 8 independent
// accumulators, so the loop is limited by the loads, not by the latency of one add chain.
void streaming_sum(const std::vector<std::uint64_t>& buffer) {
  std::uint64_t s[8] = {};
  const std::uint64_t* p = buffer.data();
  const std::size_t n = buffer.size();
  std::size_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[k + j];
  for (; k < n; ++k) s[0] += p[k];
  g_sink = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_step MODEL.safetensors [min_seconds]\n");
    return 2;
  }
  const double min_run = argc > 2 ? std::atof(argv[2]) : 0.05;
  const lstm_fast::Model model = lstm_fast::Model::load(argv[1]);
  lstm_fast::State state = model.initial_state(1);
  std::vector<float> x(static_cast<size_t>(model.input_size()), 0.5f), y(static_cast<size_t>(model.output_size()));
  const double step = median_seconds_per_call([&] { model.step(x.data(), y.data(), state); }, min_run, 7);

  // Bytes of float32 weights a step reads: every cell's W_ih, W_hh, biases, W_hr and peepholes.
  const lstm_fast::Config& c = model.config();
  const std::size_t H = static_cast<std::size_t>(c.hidden_size), R = static_cast<std::size_t>(c.output_size());
  std::size_t weight_bytes = 0;
  for (lstm_fast::Index k = 0; k < c.num_layers; ++k)
    weight_bytes += 4 * (4 * H * (static_cast<std::size_t>(c.layer_input_size(k)) + R) + (c.bias ? 4 * H : 0) +
                         (c.proj_size > 0 ? R * H : 0) + (c.peephole ? 3 * H : 0));
  std::vector<std::uint64_t> weights_sized(weight_bytes / 8, 1);
  const double read = median_seconds_per_call([&] { streaming_sum(weights_sized); }, min_run, 7);
  std::vector<std::uint64_t> big((512u << 20) / 8, 1);
  const double dram = median_seconds_per_call([&] { streaming_sum(big); }, 0.2, 3);
  std::printf(
      "{\"step_us\": %.3f, \"weight_bytes\": %zu, \"read_us\": %.3f, \"read_GBps\": %.2f, \"dram_GBps\": %.2f}\n",
      step * 1e6, weight_bytes, read * 1e6, weight_bytes / read / 1e9, big.size() * 8.0 / dram / 1e9);
  return 0;
}
