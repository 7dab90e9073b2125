/* A process that sees other cache sizes: LD_PRELOAD this into it with
 * LSTM_FAST_FAKE_CACHES="L1d,L2,L3" (in KiB), and every CPUID instruction it executes (the library's,
 * Eigen's) reports those sizes in the leaves that describe the caches: 4 (Intel's deterministic cache
 * parameters), 0x80000005 and 0x80000006 (AMD's L1 and L2/L3). Every other leaf is the CPU's own.
 *
 * How: Linux's ARCH_SET_CPUID turns CPUID into a fault (SIGSEGV) for this process; the handler runs the
 * real instruction with faulting briefly lifted, rewrites the cache fields and steps over the two bytes
 * 0F A2. Needs a CPU (or hypervisor) with CPUID faulting: /proc/cpuinfo's `cpuid_fault`. Without it the
 * process runs unchanged and prints a line saying so on stderr (tests/test_any_machine.py checks). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012

static uint32_t fake_kib[4]; /* by cache level: [1] L1d, [2] L2, [3] L3 */

static void real_cpuid(uint32_t r[4]) { __asm__ volatile("cpuid" : "+a"(r[0]), "=b"(r[1]), "+c"(r[2]), "=d"(r[3])); }

/* Leaf 4: size = ways * partitions * line * sets. Reported as 8 ways of 64-byte lines, one partition. */
static void fake_leaf4(uint32_t r[4]) {
  uint32_t type = r[0] & 0x1F, level = (r[0] >> 5) & 0x7;
  if ((type != 1 && type != 3) || level < 1 || level > 3) return; /* not a data or unified cache */
  r[1] = (7u << 22) | (0u << 12) | 63u;
  r[2] = fake_kib[level] * 1024u / (8u * 64u) - 1u;
}

static void fake_caches(uint32_t leaf, uint32_t r[4]) {
  if (leaf == 4) fake_leaf4(r);
  if (leaf == 0x80000005) r[2] = (r[2] & 0x00FFFFFFu) | (fake_kib[1] << 24); /* ECX[31:24] KiB */
  if (leaf == 0x80000006) {
    r[2] = (r[2] & 0x0000FFFFu) | (fake_kib[2] << 16);          /* ECX[31:16] KiB */
    r[3] = (r[3] & 0x0003FFFFu) | ((fake_kib[3] / 512u) << 18); /* EDX[31:18] 512 KiB */
  }
}

static void on_fault(int sig, siginfo_t* info, void* context) {
  (void)info;
  greg_t* g = ((ucontext_t*)context)->uc_mcontext.gregs;
  const unsigned char* ip = (const unsigned char*)g[REG_RIP];
  if (ip[0] != 0x0F || ip[1] != 0xA2) { /* a real fault: let it kill the process as it would have */
    signal(sig, SIG_DFL);
    return;
  }
  uint32_t r[4] = {(uint32_t)g[REG_RAX], 0, (uint32_t)g[REG_RCX], 0};
  uint32_t leaf = r[0];
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  real_cpuid(r);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  fake_caches(leaf, r);
  g[REG_RAX] = r[0], g[REG_RBX] = r[1], g[REG_RCX] = r[2], g[REG_RDX] = r[3]; /* zero-extended, as CPUID */
  g[REG_RIP] += 2;
}

__attribute__((constructor)) static void start_faking(void) {
  const char* given = getenv("LSTM_FAST_FAKE_CACHES");
  if (!given || sscanf(given, "%u,%u,%u", &fake_kib[1], &fake_kib[2], &fake_kib[3]) != 3) {
    fprintf(stderr, "cpuid_caches: LSTM_FAST_FAKE_CACHES must be \"L1d,L2,L3\" in KiB, got %s\n",
            given ? given : "nothing");
    _exit(2);
  }
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &action, NULL);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0)
    fprintf(stderr, "cpuid_caches: this CPU cannot make CPUID fault (no cpuid_fault): caches not faked\n");
}
