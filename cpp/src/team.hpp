// The library's persistent worker threads, and Team: a lease of some of them for one call.
//
// A cell's team (cell.cpp) and the two directions of a layer (network.cpp) run on helper threads.
// Starting a thread per call cost tens of microseconds, and the other CPU went idle between calls,
// then woke slowly: on the project's VM a bidirectional stack took 9.4 ms back to back but 10.4 to
// 12 ms in the calls after a 0.3 s pause, as in a benchmark. The workers are therefore started once,
// kept, and between jobs spin for kSpinMicroseconds before they sleep on a condition variable.
//
// Workers are leased, not shared: a Team takes idle workers from the pool (starting new ones when
// none is idle) and gives them back when it ends, so concurrent callers (several Python threads,
// a direction's team inside a layer's pair of directions) never wait for one another. Each job
// runs pinned off the CPU of the thread that handed it over (affinity.hpp). Workers start with every
// signal blocked, so signals reach the application's threads. After fork() the child starts a pool
// of its own; at exit the idle workers are stopped and joined.
#pragma once

#include <vector>

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

  // Runs job(k) for k = 0 .. size()-1, k = 0 on the calling thread, and returns when all have
  // returned. job must not throw (a worker cannot hand an exception back; catch inside).
  template <typename Job>
  void run(const Job& job) {
    run([](const void* context, int k) { (*static_cast<const Job*>(context))(k); }, &job);
  }

 private:
  void run(void (*job)(const void* context, int k), const void* context);
  std::vector<Worker*> workers_;
};

// Workers started so far (idle or leased): for tests.
int pool_size();

}  // namespace lstm_fast::detail
