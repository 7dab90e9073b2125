// Where the library's helper threads run (the workers of team.hpp: team members in forward.cpp and
// backward.cpp, the second direction in network.cpp).
//
// Left to the scheduler, a helper often ran on its caller's CPU and stayed there while both spun
// at a barrier: the pair then ran at half the speed of one thread (docs/PERFORMANCE.md). A helper is
// therefore kept off the CPU its caller runs on (Linux; best effort). Workers are pinned per job, to the CPUs of the
// caller that hands it over; the caller's own affinity is never touched.
#pragma once

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

namespace lstm_fast::detail {

// Where a helper of the calling thread may run: the CPUs the caller may run on, without the one it
// runs on now, or all of the caller's CPUs when that one is all it has. `valid` is false when the
// mask cannot be read (or off Linux): the helper then stays where it is. Not a single CPU: helpers
// of several callers (two directions, each with a team) are left to the scheduler within the set.
struct HelperCpus {
  bool valid = false;
  int allowed = 0;  // how many CPUs the caller may run on (0: unknown)
#ifdef __linux__
  cpu_set_t set;
#endif
};

inline HelperCpus helper_cpus() {
  HelperCpus cpus;
#ifdef __linux__
  CPU_ZERO(&cpus.set);
  if (sched_getaffinity(0, sizeof(cpus.set), &cpus.set) != 0) return cpus;
  cpus.allowed = CPU_COUNT(&cpus.set);
  const int here = sched_getcpu();
  if (here >= 0 && here < CPU_SETSIZE && CPU_COUNT(&cpus.set) > 1) CPU_CLR(here, &cpus.set);
  cpus.valid = true;
#endif
  return cpus;
}

// Restricts the calling thread to `cpus` when valid; does nothing when the system refuses.
inline void pin_this_thread(const HelperCpus& cpus) {
#ifdef __linux__
  if (cpus.valid) pthread_setaffinity_np(pthread_self(), sizeof(cpus.set), &cpus.set);
#else
  (void)cpus;
#endif
}

}  // namespace lstm_fast::detail
