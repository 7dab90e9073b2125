// Prints the cache sizes Eigen reads from this CPU (CPUID), in bytes: "L1d L2 L3". Built by
// tests/test_any_machine.py without EIGEN_NO_CPUID, to show that cpuid_caches.c reaches Eigen's query.
#include <Eigen/Core>
#include <cstdio>

int main() { std::printf("%td %td %td\n", Eigen::l1CacheSize(), Eigen::l2CacheSize(), Eigen::l3CacheSize()); }
