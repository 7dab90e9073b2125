// The library's persistent worker threads, Team: a lease of some of them for one call, and Crew: how
// its members share out the call's work so that none waits for a member the scheduler has set aside.
//
// A cell's team (forward.cpp, backward.cpp) and the two directions of a layer (network.cpp) run on
// helper threads. Starting a thread per call costs tens of microseconds, and an idle CPU wakes
// slowly (docs/PERFORMANCE.md), so the workers are started once, kept, and between jobs spin for
// kSpinMicroseconds before they sleep on a condition variable.
//
// Workers are leased, not shared: a Team takes idle workers from the pool (starting new ones when
// none is idle) and gives them back when it ends, so concurrent callers (several Python threads,
// a direction's team inside a layer's pair of directions) never wait for one another. Each job
// runs pinned off the CPU of the thread that handed it over (affinity.hpp). A job not started by the
// time the caller has done the work is taken back (Team::run). Workers start with every
// signal blocked, so signals reach the application's threads. After fork() the child starts a pool
// of its own; at exit the idle workers are stopped and joined.
#pragma once

#include <atomic>
#include <exception>
#include <memory>
#include <vector>

#include "runtime/affinity.hpp"
#include "lstm_fast/config.hpp"  // Index

namespace lstm_fast::detail {

struct Worker;  // team.cpp

// A test hook: LSTM_FAST_TEST_STALL_US=n (read once) makes every worker sleep n microseconds before each
// job and before every 8th segment of a Crew, as a helper descheduled on a busy machine would; results
// must not change and calls must not hang (tests/test_threads.py). 0 when unset.
int test_stall_microseconds();
void test_stall(unsigned segment);  // sleeps when segment % 8 == 1

// How long an idle worker spins for its next job before it sleeps: about the gap between the
// layers, the directions and the calls of a training step, so those find it awake.
constexpr int kSpinMicroseconds = 200;

// n elements in place when n <= N, else on the heap: a team of up to N members leases and meets
// without allocating, so that a streaming step on a team allocates nothing either.
template <typename T, std::size_t N>
class InlineArray {
 public:
  explicit InlineArray(std::size_t n) : heap_(n > N ? new T[n] : nullptr) {}
  T& operator[](std::size_t i) { return heap_ ? heap_[i] : local_[i]; }
  const T& operator[](std::size_t i) const { return heap_ ? heap_[i] : local_[i]; }

 private:
  T local_[N];
  std::unique_ptr<T[]> heap_;
};

class Team {
 public:
  // Leases up to members - 1 workers. Fewer only when the system refuses to start a thread; the
  // team then has fewer members (at least one: the caller), and the work is shared among those.
  explicit Team(int members);
  ~Team();  // gives the workers back to the pool
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  int size() const { return leased_ + 1; }
  // More members than CPUs the caller may run on (affinity): some must share a CPU.
  bool crowded() const { return cpus_.allowed > 0 && cpus_.allowed < size(); }

  // Runs job(k) for k = 0 .. size()-1, k = 0 on the calling thread, and returns when every job that
  // started has returned. A worker that has not started its job by the time job(0) returns (it is
  // descheduled, or still waking) never runs it: job(0) must then have done the work (run_team's Crew
  // does). job must not throw (a worker cannot hand an exception back; catch inside).
  template <typename Job>
  void run(const Job& job) {
    run([](const void* context, int k) { (*static_cast<const Job*>(context))(k); }, &job);
  }

 private:
  void run(void (*job)(const void* context, int k), const void* context);
  InlineArray<Worker*, 15> workers_;  // [leased_]
  int leased_ = 0;
  HelperCpus cpus_;  // where the helpers run: off the caller's CPU (affinity.hpp), read when leased
};

// How long a member waiting for the rest of a segment (Crew below) spins before it sleeps: far above
// the imbalance of a step on a quiet machine (a step is microseconds), far below a scheduler's time
// slice (milliseconds), which is what the wait lasts when the member it waits for has been descheduled.
constexpr int kBarrierSpinMicroseconds = 50;

// How long a member that has done its own slice of a segment waits for the others to finish theirs
// before it looks for slices no one has started, to take them, unless a member was late in the
// previous segment too. On a quiet machine members start a segment within a microsecond of each other
// and finish within a few; looking costs a read of every member's claim (a cache line each).
constexpr int kLateMicroseconds = 5;

// How a team shares out a call's work: in segments (a time step, a chunk of steps, the weight
// gradients), each split into slices() pieces. Slice j is what member j did when each member did its
// own: the split, not the schedule, fixes which numbers are added in which order, so results do not
// depend on who runs a slice. Every member calls Seat::share for the same segments in the same order.
// A member runs its own slice, then any slice a late member has not started, then waits until every
// slice of the segment is done (spinning for kBarrierSpinMicroseconds, then asleep on a futex on
// Linux). So a descheduled member delays the others by at most the slice it is in, not by the
// scheduler's time slice per segment, and a member that has not started by the end of a call delays
// it not at all (Team::run takes its job back).
//
// A crowded team (more members than CPUs) never sleeps: a waiter then shares its CPU with a member it
// waits for, and yields to it after a short spin instead of keeping the CPU for the whole spin.
class Crew {
 public:
  // `members`: the threads the team has (Team::size), at most `slices`; crowded: Team::crowded.
  Crew(int slices, int members, bool crowded);
  int slices() const { return slices_; }

 private:
  friend class Seat;
  struct alignas(64) Slot {
    std::atomic<unsigned> claimed{0};  // how many segments have had this slice claimed
  };
  bool claim(int slice, unsigned segment) {
    unsigned expected = segment;  // unclaimed in `segment` <=> claimed in every segment before it
    return slots_[slice].claimed.compare_exchange_strong(expected, segment + 1, std::memory_order_acq_rel);
  }
  bool wait_for(unsigned segment, int microseconds);  // team.cpp: spins at most that long; true: complete
  void finish(unsigned segment);                      // team.cpp
  void wait(unsigned segment);                        // team.cpp
  bool complete(unsigned segment, int done) const {   // every slice of `segment` done
    return static_cast<int>(static_cast<unsigned>(done) - (segment + 1) * static_cast<unsigned>(slices_)) >= 0;
  }

  const int slices_;
  const bool alone_;  // one member: no one else to wait for
  const bool crowded_;
  const bool stall_;  // test_stall_microseconds() > 0, read once per call rather than per segment
  InlineArray<Slot, 16> slots_;
  alignas(64) std::atomic<int> done_{0};  // slices finished in all segments (wraps); the futex word
  std::atomic<int> sleepers_{0};          // members asleep (or about to be) in wait()
};

// A member's place in a Crew: the member's own slice and the segment it is at.
class Seat {
 public:
  Seat(Crew& crew, int member) : crew_(crew), member_(member) {}
  int member() const { return member_; }
  int slices() const { return crew_.slices_; }

  // Runs work(j) for the slices j of the next segment this member gets (its own first; others only
  // when their member is late), then waits until every slice of the segment is done.
  template <typename Work>
  void share(const Work& work) {
    const unsigned segment = segment_++;
    if (member_ > 0 && crew_.stall_) test_stall(segment);
    if (crew_.claim(member_, segment)) run(work, member_, segment);
    // A segment not complete kLateMicroseconds after this member's own slice (at once when a member
    // was late in the previous segment, or there is no one else) may have a late member: take the
    // slices no one has started.
    const bool patient = !took_last_ && !crew_.alone_;
    bool took = false;
    if (!crew_.wait_for(segment, patient ? kLateMicroseconds : 0)) {
      const int n = crew_.slices_;
      for (int i = 1; i < n; ++i) {
        const int j = member_ + i < n ? member_ + i : member_ + i - n;
        if (crew_.claim(j, segment)) {
          run(work, j, segment);
          took = true;
        }
      }
      crew_.wait(segment);
    }
    took_last_ = took;
  }

 private:
  template <typename Work>
  void run(const Work& work, int slice, unsigned segment) {
    work(slice);
    crew_.finish(segment);
  }
  Crew& crew_;
  const int member_;
  unsigned segment_ = 0;
  bool took_last_ = false;  // took a late member's slice in the previous segment: take at once now
};

// Runs member(seat) for members k = 0 .. n-1 on a Team (k = 0 on the caller's thread, the others on the
// pool's workers), all seated at one Crew of `members` slices: the work is split in `members` slices
// whatever number of workers the system gave or arrives in time. member must not throw.
template <typename Member>
void run_team(int members, const Member& member) {
  Team workers(members);
  Crew crew(members, workers.size(), workers.crowded());
  workers.run([&](int k) {
    Seat seat(crew, k);
    member(seat);
  });
}

// Runs the directions of a layer: with `parallel`, direction(0) here and direction(1) on a worker
// (team.hpp), either taken by the other thread when its own is late; else both here in order. An
// exception from either is rethrown on the caller's thread.
template <typename Direction>
void run_directions(Index directions, bool parallel, Direction direction) {
  if (!parallel || directions != 2) {
    for (Index d = 0; d < directions; ++d) direction(d);
    return;
  }
  std::exception_ptr errors[2];
  run_team(2, [&](Seat& seat) {
    seat.share([&](int d) {
      try {
        direction(d);
      } catch (...) {
        errors[d] = std::current_exception();
      }
    });
  });
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace lstm_fast::detail
