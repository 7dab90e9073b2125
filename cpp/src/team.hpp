// The library's persistent worker threads, Team: a lease of some of them for one call, and the
// barrier its members meet at.
//
// A cell's team (forward.cpp, backward.cpp) and the two directions of a layer (network.cpp) run on
// helper threads. Starting a thread per call costs tens of microseconds, and an idle CPU wakes
// slowly (docs/PERFORMANCE.md), so the workers are started once, kept, and between jobs spin for
// kSpinMicroseconds before they sleep on a condition variable.
//
// Workers are leased, not shared: a Team takes idle workers from the pool (starting new ones when
// none is idle) and gives them back when it ends, so concurrent callers (several Python threads,
// a direction's team inside a layer's pair of directions) never wait for one another. Each job
// runs pinned off the CPU of the thread that handed it over (affinity.hpp). Workers start with every
// signal blocked, so signals reach the application's threads. After fork() the child starts a pool
// of its own; at exit the idle workers are stopped and joined.
#pragma once

#include <atomic>
#include <vector>

#include "affinity.hpp"

namespace lstm_fast::detail {

struct Worker;  // team.cpp

// How long an idle worker spins for its next job before it sleeps: about the gap between the
// layers, the directions and the calls of a training step, so those find it awake.
constexpr int kSpinMicroseconds = 200;

class Team {
 public:
  // Leases up to members - 1 workers. Fewer only when the system refuses to start a thread; the
  // team then has fewer members (at least one: the caller), and the work is shared among those.
  explicit Team(int members);
  ~Team();  // gives the workers back to the pool
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // More members than CPUs the caller may run on (affinity): some must share a CPU.
  bool crowded() const { return cpus_.allowed > 0 && cpus_.allowed < size(); }

  // Runs job(k) for k = 0 .. size()-1, k = 0 on the calling thread, and returns when all have
  // returned. job must not throw (a worker cannot hand an exception back; catch inside).
  template <typename Job>
  void run(const Job& job) {
    run([](const void* context, int k) { (*static_cast<const Job*>(context))(k); }, &job);
  }

 private:
  void run(void (*job)(const void* context, int k), const void* context);
  std::vector<Worker*> workers_;
  HelperCpus cpus_;  // where the helpers run: off the caller's CPU (affinity.hpp), read when leased
};

// How long a member waiting at a SpinBarrier spins before it sleeps: far above the imbalance of a
// step on a quiet machine (a step is microseconds), far below a scheduler's time slice (milliseconds),
// which is what the wait lasts when the member it waits for has been descheduled.
constexpr int kBarrierSpinMicroseconds = 50;

// A barrier for a team of threads that meet once or twice per time step: spins for
// kBarrierSpinMicroseconds, then sleeps (a futex on Linux; elsewhere it yields) until the last member
// arrives. On a busy machine a spinning or yielding waiter keeps its CPU, or gives it up for a whole
// time slice, while the member it waits for is descheduled; a sleeper gives its CPU to the other work
// and is woken, with the scheduler's preference for a task that slept, as soon as the last arrives.
//
// A crowded team (more members than CPUs) never sleeps: a waiter then shares its CPU with a member it
// waits for, and yields to it after a short spin instead of keeping the CPU for the whole spin.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties, bool crowded = false) : parties_(parties), crowded_(crowded) {}
  void wait() {
    if (parties_ > 1) arrive_and_wait();
  }

 private:
  void arrive_and_wait();  // team.cpp: compiled once, not per instruction set
  const int parties_;
  const bool crowded_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};  // also the futex word the sleepers wait on
  std::atomic<int> sleepers_{0};    // members asleep (or about to be): the last arrival wakes them
};

// Runs member(k, n, barrier) for k = 0 .. n-1 on a Team: k = 0 on the caller's thread, the others on
// the pool's workers. n = members unless the system could not start enough threads; the members
// share the work whatever n is, so it is done either way. member must not throw.
template <typename Member>
void run_team(int members, const Member& member) {
  Team workers(members);
  SpinBarrier barrier(workers.size(), workers.crowded());
  workers.run([&](int k) { member(k, workers.size(), barrier); });
}

}  // namespace lstm_fast::detail
