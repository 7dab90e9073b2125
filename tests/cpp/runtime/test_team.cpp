// The team (cpp/src/runtime/team.hpp) on its own: a Crew runs every slice of every segment exactly once, a
// segment only after the one before it is complete, and a late member's slices pass to the others.
// No timing is asserted; a late member is made late by a sleep.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/team.hpp"

namespace {

using lstm_fast::detail::run_team;
using lstm_fast::detail::Seat;

// Runs `segments` segments of `slices` slices on a team of `slices`; member `late` (if any) sleeps
// before it starts and again every `late_every` segments. Counts who ran what.
struct Tally {
  int slices, segments;
  std::vector<std::atomic<int>> runs;  // [segment * slices + slice]: times run
  std::vector<std::atomic<int>> by;    // [segment * slices + slice]: the member that ran it
  std::vector<std::atomic<int>> done;  // [segment]: slices of it finished
  std::atomic<int> out_of_order{0};    // slices that started before the segment before was done
  std::vector<int> written;            // [segment * slices + slice]: plain ints written by the slice and
  std::atomic<int> unseen{0};          // read by every slice of the next segment (the crew orders them)

  Tally(int n, int s) : slices(n), segments(s), runs(n * s), by(n * s), done(s), written(n * s, -1) {}

  void go(int late, int late_every) {
    run_team(slices, [&](Seat& seat) {
      const auto nap = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
      if (seat.member() == late) nap();
      for (int s = 0; s < segments; ++s) {
        if (seat.member() == late && late_every > 0 && s % late_every == 0) nap();
        seat.share([&](int j) {
          if (s > 0 && done[s - 1].load() != slices) out_of_order.fetch_add(1);
          for (int i = 0; s > 0 && i < slices; ++i) unseen += written[(s - 1) * slices + i] != s - 1 + i;
          written[s * slices + j] = s + j;
          runs[s * slices + j].fetch_add(1);
          by[s * slices + j].store(seat.member());
          done[s].fetch_add(1);
        });
      }
    });
  }
};

TEST(Crew, EverySliceRunsOnceInOrder) {
  for (int slices : {1, 2, 3, 4}) {
    Tally run(slices, 200);
    run.go(/*late=*/-1, 0);
    for (auto& count : run.runs) EXPECT_EQ(count.load(), 1);
    EXPECT_EQ(run.out_of_order.load(), 0);
    EXPECT_EQ(run.unseen.load(), 0);
  }
}

TEST(Crew, ALateMembersSlicesPassToTheOthers) {
  Tally run(2, 50);
  run.go(/*late=*/1, /*late_every=*/0);  // member 1 naps 20 ms before its first segment
  for (auto& count : run.runs) EXPECT_EQ(count.load(), 1);
  EXPECT_EQ(run.out_of_order.load(), 0);
  EXPECT_EQ(run.by[1].load(), 0) << "the caller should have run the late member's first slice";
}

TEST(Crew, AMemberLateAgainAndAgainCatchesUp) {
  Tally run(3, 60);
  run.go(/*late=*/2, /*late_every=*/10);
  for (auto& count : run.runs) EXPECT_EQ(count.load(), 1);
  EXPECT_EQ(run.out_of_order.load(), 0);
  int taken = 0;  // slices of member 2 run by another member
  for (int s = 0; s < run.segments; ++s) taken += run.by[s * 3 + 2].load() != 2;
  EXPECT_GT(taken, 0);
}

TEST(Crew, ShortCallsAfterIdleGapsRunEverySliceOnce) {
  // Between calls the workers go to sleep (after kSpinMicroseconds); a call of one tiny segment is then
  // done by the caller before a worker wakes, and the worker's job is taken back (Team::run) instead of
  // waited for. Whoever runs them, each slice runs once, and a job runs at most once.
  int helpers_ran = 0;
  for (int call = 0; call < 100; ++call) {
    std::this_thread::sleep_for(std::chrono::microseconds(call % 2 ? 400 : 0));
    std::atomic<int> runs[2] = {0, 0};
    std::atomic<int> members{0};
    run_team(2, [&](Seat& seat) {
      members.fetch_add(1 << (4 * seat.member()));
      seat.share([&](int j) { runs[j].fetch_add(1); });
    });
    EXPECT_EQ(runs[0].load(), 1);
    EXPECT_EQ(runs[1].load(), 1);
    EXPECT_EQ(members.load() & 15, 1);  // the caller, once
    EXPECT_LE(members.load() >> 4, 1);  // the helper at most once
    helpers_ran += members.load() >> 4;
  }
  RecordProperty("helper_jobs_run_of_100", helpers_ran);
}

TEST(Crew, CallersInParallelShareNothing) {
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        Tally run(2, 30);
        run.go(-1, 0);
        for (auto& count : run.runs) wrong += count.load() != 1;
      }
    });
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
