// The worker pool behind Team (team.hpp).
#include "runtime/team.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "runtime/affinity.hpp"
#include "lstm_fast/config.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LSTM_FAST_PAUSE() _mm_pause()
#else
#define LSTM_FAST_PAUSE() ((void)0)
#endif

#ifdef __unix__
#include <pthread.h>
#include <signal.h>
#endif

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#endif

namespace lstm_fast::detail {

int test_stall_microseconds() {
  static const int stall = [] {
    const char* value = std::getenv("LSTM_FAST_TEST_STALL_US");
    return value ? std::max(0, std::atoi(value)) : 0;
  }();
  return stall;
}

void test_stall(unsigned segment) {
  if (segment % 8 == 1) std::this_thread::sleep_for(std::chrono::microseconds(test_stall_microseconds()));
}

namespace {

// Sleeps while *word == expected (returns at once when it is not, or on a spurious wake-up).
void sleep_while_equal(std::atomic<int>& word, int expected) {
#ifdef __linux__
  static_assert(sizeof(std::atomic<int>) == sizeof(int) && std::atomic<int>::is_always_lock_free);
  syscall(SYS_futex, reinterpret_cast<int*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  (void)word, (void)expected;
  std::this_thread::yield();
#endif
}

void wake_all(std::atomic<int>& word) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<int*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

using Clock = std::chrono::steady_clock;

// Spins until done() or for `microseconds`; true when done() held.
template <typename Done>
bool spin_until(const Done& done, int microseconds) {
  const auto start = Clock::now();
  for (int spins = 1;; ++spins) {
    if (done()) return true;
    LSTM_FAST_PAUSE();
    if ((spins & 63) == 0 && Clock::now() - start > std::chrono::microseconds(microseconds)) return false;
  }
}

}  // namespace

// One worker: a thread that waits for `epoch` to move, then takes the job handed over (state kHanded
// -> kRunning) unless its caller has taken it back, runs job(context, k) and sets state kFree. The
// fields of a job are written before state becomes kHanded (release) and read after the worker takes
// it (acquire); a caller waiting for the job to end sleeps on `state` (a futex on Linux).
struct Worker {
  enum : int { kFree = 0, kHanded = 1, kRunning = 2 };
  std::atomic<std::uint64_t> epoch{0};
  std::atomic<int> state{kFree};
  std::atomic<int> caller_sleeps{0};
  std::mutex mutex;
  std::condition_variable wake;
  void (*job)(const void*, int) = nullptr;
  const void* context = nullptr;
  int k = 0;
  HelperCpus cpus;
  bool crowded = false;  // the job's team has more members than CPUs (team.hpp)
  // Return (at exit). Atomic: a worker may still be waking from a job taken back when it is set.
  std::atomic<bool> stop{false};
  std::thread thread;

  void loop() {
#ifdef __linux__
    pthread_setname_np(pthread_self(), "lstm_fast");  // as top, perf and /proc show it
#endif
    std::uint64_t seen = 0;
    bool yield = false;  // the last job was a crowded team's
    HelperCpus pinned;   // where this thread is pinned now (valid = false: nowhere yet)
    for (;;) {
      seen = wait_for_job(seen, yield);
      if (stop.load(std::memory_order_acquire)) return;
      int handed = kHanded;
      if (!state.compare_exchange_strong(handed, kRunning, std::memory_order_acq_rel)) continue;  // taken back
      if (cpus.valid && !(pinned.valid && same_cpus(pinned, cpus))) {  // a syscall only on a change
        pin_this_thread(cpus);
        pinned = cpus;
      }
      yield = crowded;
      if (test_stall_microseconds() > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(test_stall_microseconds()));
      job(context, k);
      state.store(kFree, std::memory_order_seq_cst);  // the last touch of the caller's job
      if (caller_sleeps.load(std::memory_order_seq_cst)) wake_all(state);
    }
  }

  // The caller's side, after its own part: true when the job was never started (taken back now).
  bool take_back() {
    int handed = kHanded;
    return state.compare_exchange_strong(handed, kFree, std::memory_order_acq_rel);
  }

  // The caller's side: returns once a started job has ended (spins, then sleeps on `state`).
  void wait_until_free() {
    const auto free = [this] { return state.load(std::memory_order_acquire) == kFree; };
    if (spin_until(free, kBarrierSpinMicroseconds)) return;
    caller_sleeps.store(1, std::memory_order_seq_cst);
    while (state.load(std::memory_order_seq_cst) == kRunning) sleep_while_equal(state, kRunning);
    caller_sleeps.store(0, std::memory_order_relaxed);
  }

  // Spins for kSpinMicroseconds, then sleeps until the epoch moves past `seen`; returns the new one.
  // After a crowded team's job (team.hpp) the spin yields now and then: the caller may need this CPU.
  // Otherwise it does not: a yield on a busy CPU gives it to the other work for the rest of a
  // scheduler slice (milliseconds), and the worker would miss every job until then.
  std::uint64_t wait_for_job(std::uint64_t seen, bool yield) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      const std::uint64_t now = epoch.load(std::memory_order_acquire);
      if (now != seen) return now;
      LSTM_FAST_PAUSE();
      if ((spins & 255) == 255) {
        if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(kSpinMicroseconds)) break;
        if (yield) std::this_thread::yield();
      }
    }
    std::unique_lock<std::mutex> lock(mutex);
    wake.wait(lock, [&] { return epoch.load(std::memory_order_acquire) != seen; });
    return epoch.load(std::memory_order_acquire);
  }

  void hand_over(void (*j)(const void*, int), const void* c, int member, const HelperCpus& where, bool in_crowd) {
    job = j;
    crowded = in_crowd;
    context = c;
    k = member;
    cpus = where;
    state.store(kHanded, std::memory_order_release);
    {
      // Under the mutex, so that a worker between its last check and its wait cannot miss it.
      std::lock_guard<std::mutex> lock(mutex);
      epoch.fetch_add(1, std::memory_order_release);
    }
    wake.notify_one();
  }

  void stop_and_join() {
    stop.store(true, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex);
      epoch.fetch_add(1, std::memory_order_release);
    }
    wake.notify_one();
    thread.join();
  }

  static bool same_cpus(const HelperCpus& a, const HelperCpus& b) {
#ifdef __linux__
    return CPU_EQUAL(&a.set, &b.set);
#else
    (void)a, (void)b;
    return true;
#endif
  }
};

namespace {

// The idle workers. At exit they are stopped and joined (so that nothing is left running for
// valgrind or a sanitizer to report); a worker still leased then, by a thread that computes while
// another calls exit(), is left to the process's end.
struct Pool {
  std::mutex mutex;
  std::vector<Worker*> idle;
  int started = 0;
};

Pool* g_pool = nullptr;

#ifdef __unix__
// fork() copies only the calling thread: the child's pool must not hand jobs to workers that do
// not exist there, nor find the mutex held by a thread that was mid-lease in the parent.
void before_fork() { g_pool->mutex.lock(); }
void after_fork_parent() { g_pool->mutex.unlock(); }
void after_fork_child() { g_pool = new Pool; }  // the parent's workers are gone; the old Pool leaks
#endif

void stop_idle_workers() {
  std::unique_lock<std::mutex> lock(g_pool->mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread is leasing: leave the workers to the process's end
  for (Worker* worker : g_pool->idle) {
    worker->stop_and_join();
    delete worker;
  }
  g_pool->idle.clear();
}

Pool& pool() {
  static const bool created = [] {
    g_pool = new Pool;
    std::atexit(stop_idle_workers);
#ifdef __unix__
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
#endif
    return true;
  }();
  (void)created;
  return *g_pool;
}

}  // namespace

Team::Team(int members) : workers_(static_cast<size_t>(std::max(members - 1, 0))) {  // may throw: none taken yet
  if (members <= 1) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  while (size() < members && !p.idle.empty()) {
    workers_[static_cast<size_t>(leased_++)] = p.idle.back();
    p.idle.pop_back();
  }
  // At most kMaxThreads workers in all (config.hpp): beyond it a team gets fewer members (the work is
  // the same).
  while (size() < members && p.started < kMaxThreads) {
    Worker* worker = nullptr;
#ifdef __unix__
    // A worker starts with every signal blocked (it inherits this thread's mask for the moment), so
    // that signals go to the application's own threads, never to a worker between jobs.
    sigset_t all, mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &mask);
#endif
    bool started = false;
    try {
      p.idle.reserve(static_cast<size_t>(p.started) + 1);  // so that ~Team gives it back without allocating
      worker = new Worker;
      worker->thread = std::thread(&Worker::loop, worker);
      started = true;
    } catch (...) {  // std::system_error or bad_alloc: no thread to give; the team stays smaller
      delete worker;
    }
#ifdef __unix__
    pthread_sigmask(SIG_SETMASK, &mask, nullptr);
#endif
    if (!started) break;
    ++p.started;
    workers_[static_cast<size_t>(leased_++)] = worker;
  }
  if (leased_ > 0) cpus_ = helper_cpus();  // the helpers off the caller's CPU
}

Team::~Team() {
  if (leased_ == 0) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  for (int i = 0; i < leased_; ++i) p.idle.push_back(workers_[static_cast<size_t>(i)]);  // within capacity
}

void Team::run(void (*job)(const void*, int), const void* context) {
  if (leased_ == 0) {
    job(context, 0);
    return;
  }
  for (int i = 0; i < leased_; ++i) workers_[static_cast<size_t>(i)]->hand_over(job, context, i + 1, cpus_, crowded());
  job(context, 0);
  for (int i = 0; i < leased_; ++i) {
    Worker* worker = workers_[static_cast<size_t>(i)];
    if (!worker->take_back()) worker->wait_until_free();
  }
}

Crew::Crew(int slices, int members, bool crowded)
    : slices_(slices),
      alone_(members <= 1),
      crowded_(crowded),
      stall_(test_stall_microseconds() > 0),
      slots_(static_cast<size_t>(slices)) {}

bool Crew::wait_for(unsigned segment, int microseconds) {
  const auto segment_done = [&] { return complete(segment, done_.load(std::memory_order_acquire)); };
  return segment_done() || (microseconds > 0 && spin_until(segment_done, microseconds));
}

void Crew::finish(unsigned segment) {
  // seq_cst, as a sleeper's count-then-check in wait(): either it sees this count, or this sees it
  // counted and wakes it.
  const int done = done_.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (complete(segment, done) && sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(done_);
}

void Crew::wait(unsigned segment) {
  const auto segment_done = [&] { return complete(segment, done_.load(std::memory_order_acquire)); };
  if (crowded_) {
    for (int spins = 0; !segment_done(); ++spins)
      if (spins > 4000) std::this_thread::yield();
    return;
  }
  if (spin_until(segment_done, kBarrierSpinMicroseconds)) return;
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  for (int done = done_.load(std::memory_order_seq_cst); !complete(segment, done);
       done = done_.load(std::memory_order_seq_cst))
    sleep_while_equal(done_, done);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace lstm_fast::detail
