/* SPDX-License-Identifier: MIT */
/* guard: what a damaged data file makes LMDB do (an assertion, a fault through its map or in
 * its code), turned into an error of the guarded call instead of the end of the process
 * (ps_store_guarded and its read and write forms); the note a process leaves when a write of
 * its broke and it keeps the writer lock (writer.broken). docs/architecture.md, "Damaged
 * pages", says what is caught and what is not. */
#define _GNU_SOURCE /* SA_ONSTACK, REG_RIP, dl_iterate_phdr */
#include "store_int.h"

#include "ps/fsutil.h"
#include "ps/process.h"

#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PS_ASAN 1
#endif
#endif
#ifdef PS_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* A damaged data file can make LMDB fail in three ways that end the process: an assertion
 * (LMDB aborts), or a read through its map of a page past the end of the file (SIGBUS) or a
 * write to a page a damaged header made it take for its own (SIGSEGV: the map is read-only).
 * Inside ps_store_guarded() each of these jumps back to the guard instead, so that one damaged
 * space fails its request or batch, not the whole server. A fault outside the guarded store's
 * map, or on a thread with no guard, is left to the handler that was there before (a crash, as
 * without the guard). */
typedef struct guard {
    jmp_buf at;
    struct guard *outer;
    ps_store *store;
    const char *map;
    size_t map_size;
} guard;

static _Thread_local guard *guard_top;
static _Thread_local ps_txn *writing;    /* this thread's open write transaction */
static struct sigaction fault_before[2]; /* SIGBUS, SIGSEGV */
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

/* `sp`: the stack pointer of the code a fault stopped, when the jump starts from the signal
 * stack. AddressSanitizer cannot tell which frames a jump from there abandons, and would keep
 * their poisoned red zones: later frames on the same stack would then read as overflows. */
static void damage_found(guard *g, uintptr_t sp)
{
#ifdef PS_ASAN
    if (sp && sp < (uintptr_t)g)
        __asan_unpoison_memory_region((void *)sp, (uintptr_t)g - sp);
#else
    (void)sp;
#endif
    atomic_store(&g->store->damaged, true);
    /* LMDB's own state of a write transaction it was in the middle of cannot be trusted
     * (ending it may free what a damaged page made it take for its own): the transaction is
     * dropped without LMDB, keeping the writer's lock, and this process writes no more */
    if (writing && writing->store == g->store) {
        writing->broken = true;
        atomic_store(&g->store->write_broken, true);
    }
    guard_top = g->outer;
    longjmp(g->at, 1);
}

void st_on_lmdb_assert(MDB_env *env, const char *msg)
{
    ps_store *s = mdb_env_get_userctx(env);
    guard *g = guard_top;
    ps_log(PS_LOG_ERROR,
           "msg=\"store corrupt: %s\" store=%s detail=\"%s\" "
           "hint=\"restore the space from a snapshot, or salvage its log into a new space "
           "(docs/profilectl.md, log --salvage)\"",
           g && g->store == s ? "LMDB met a damaged page; the operation fails"
                              : "LMDB stops the process",
           s ? s->name : "?", msg);
    if (g && g->store == s)
        damage_found(g, 0); /* on the thread's own stack: the jump unwinds it as usual */
}

/* The address range of LMDB's code, where a fault with no map address behind it (a null
 * pointer LMDB took from a damaged page) is the damage too; found once, by the segment that
 * holds mdb_env_create. */
static uintptr_t lmdb_code_from, lmdb_code_to;

static int lmdb_code_find(struct dl_phdr_info *info, size_t size, void *ud)
{
    (void)size;
    uintptr_t fn = (uintptr_t)ud;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == 0)
        return 0; /* the program itself (its PLT stub for the function, or a static LMDB) */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t from = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && fn >= from &&
            fn < from + ph->p_memsz) {
            lmdb_code_from = from;
            lmdb_code_to = from + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

static bool fault_in_lmdb(void *uc)
{
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#else
    uintptr_t pc = 0;
    (void)uc;
#endif
    return pc >= lmdb_code_from && pc < lmdb_code_to;
}

/* The stack pointer of the interrupted code (0 where unknown). */
static uintptr_t fault_sp(void *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

static void on_fault(int sig, siginfo_t *info, void *uc)
{
    guard *g = guard_top;
    const char *at = info->si_addr;
    /* the data file's map; or, inside LMDB's code, a pointer or an offset LMDB took from a
     * damaged page: near null (a SIGBUS there is a non-canonical address, which the kernel
     * reports as 0), or any address that faults with SIGSEGV (past a page LMDB copied to the
     * heap in a write transaction). Not a SIGBUS elsewhere, such as the lock file's map cut
     * short: LMDB holds its reader mutex while it writes there, and a jump would leave it held */
    bool in_map = g && g->map && at >= g->map && at < g->map + g->map_size;
    bool wild = (sig == SIGSEGV || (uintptr_t)at < (64u << 10)) && fault_in_lmdb(uc);
    if (g && (in_map || wild)) {
        /* ps_log is not for signal handlers: one line from parts, with write() */
        static const char say[] = ": LMDB faulted on a damaged page of a store's data file; "
                                  "the operation fails\n";
        const char *who = program_invocation_short_name;
        ssize_t w = write(2, who, strlen(who));
        w = write(2, say, sizeof say - 1);
        (void)w;
        damage_found(g, fault_sp(uc));
    }
    /* not ours: the handler from before takes the fault when the instruction runs again */
    sigaction(sig, &fault_before[sig == SIGSEGV], NULL);
}

static void fault_install(void)
{
    dl_iterate_phdr(lmdb_code_find, (void *)(uintptr_t)mdb_env_create);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK; /* NODEFER: nothing stays blocked
                                                         * after the jump back */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &fault_before[0]);
    sigaction(SIGSEGV, &sa, &fault_before[1]);
}

/* Where LMDB mapped the store's data file: LMDB does not say (mdb_env_info gives the
 * address only for a fixed map), so it is found in /proc/self/maps: the mapping of the map's
 * size that holds `inside` (a value read from the map), or without one the mapping of the
 * file's device and inode (which overlay filesystems do not show as they are). Left unknown
 * (faults then are not caught) when neither finds it. */
void st_map_find(ps_store *s, const void *inside)
{
    int fd;
    struct stat st;
    MDB_envinfo info;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0 || mdb_env_info(s->env, &info) != 0)
        return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return;
    uintptr_t at = (uintptr_t)inside;
    char line[4608];
    while (fgets(line, sizeof line, f)) {
        unsigned long long from, to, ino;
        unsigned maj, min;
        if (sscanf(line, "%llx-%llx %*s %*x %x:%x %llu", &from, &to, &maj, &min, &ino) != 5 ||
            to - from != info.me_mapsize)
            continue;
        if (inside ? at >= from && at < to
                   : ino == (unsigned long long)st.st_ino && maj == major(st.st_dev) &&
                         min == minor(st.st_dev)) {
            s->map = (const char *)(uintptr_t)from;
            s->map_size = (size_t)(to - from);
            break;
        }
    }
    fclose(f);
}

/* ---- a note for other processes: this one holds the writer lock of a damaged store ----
 * A broken write transaction keeps LMDB's writer lock until this process ends (above), and a
 * write transaction of any other process would wait for it without end. The note beside the
 * data file names this process (its pid and start time, so that a reused pid does not count),
 * and every write transaction first looks for a note left by another process still running. */
#define WRITER_NOTE "writer.broken"

static void writer_note_path(ps_store *s, char *out, size_t cap)
{
    const char *dir = NULL;
    if (mdb_env_get_path(s->env, &dir) != 0 || dir == NULL)
        dir = ".";
    snprintf(out, cap, "%s/" WRITER_NOTE, dir);
}

static void writer_note_leave(ps_store *s)
{
    char path[4096], tmp[4200], line[64];
    writer_note_path(s, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    int n =
        snprintf(line, sizeof line, "%ld %llu\n", (long)getpid(), ps_process_start_ticks(getpid()));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, line, (size_t)n) == n;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        ps_log(PS_LOG_ERROR, "msg=\"cannot leave the writer note\" store=%s path=%s", s->name,
               path);
    }
}

/* The pid of another running process whose note says it holds the writer lock, else 0 (a
 * note whose process has ended is removed). */
long st_writer_note_holder(ps_store *s)
{
    char path[4096], line[64];
    writer_note_path(s, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    long pid = 0;
    unsigned long long started = 0;
    line[n > 0 ? n : 0] = 0;
    if (sscanf(line, "%ld %llu", &pid, &started) != 2 || pid <= 0)
        pid = 0;
    if (pid == (long)getpid())
        return 0; /* this process's own: its write_broken flag already says so */
    if (pid && started && ps_process_start_ticks(pid) == started)
        return pid;
    unlink(path); /* its process has ended, and the lock with it */
    return 0;
}

ps_status ps_store_guarded(ps_store *s, ps_status (*fn)(void *ud), void *ud)
{
    pthread_once(&fault_once, fault_install);
    guard g = {.outer = guard_top, .store = s, .map = s->map, .map_size = s->map_size};
    ps_status st;
    guard_top = &g;
    if (setjmp(g.at) == 0) {
        st = fn(ud);
        guard_top = g.outer;
    } else {
        st = PS_ECORRUPT; /* damage_found() restored guard_top */
        if (atomic_load(&s->write_broken) && !atomic_exchange(&s->writer_noted, true))
            writer_note_leave(s);
    }
    return st;
}

typedef struct read_call {
    ps_txn *t;
    ps_status (*fn)(ps_txn *t, void *ud);
    void *ud;
} read_call;

static ps_status read_call_run(void *ud)
{
    read_call *r = ud;
    return r->fn(r->t, r->ud);
}

ps_status ps_store_read_guarded(ps_store *s, ps_status (*fn)(ps_txn *t, void *ud), void *ud,
                                bool *ran)
{
    read_call r = {NULL, fn, ud};
    ps_status st = ps_txn_begin(s, false, &r.t);
    if (ran)
        *ran = st == PS_OK;
    if (st != PS_OK)
        return st;
    st = ps_store_guarded(s, read_call_run, &r);
    ps_txn_abort(r.t); /* a read transaction, cut short or not, ends here */
    return st;
}

typedef struct write_call {
    ps_txn *t;
    ps_status (*fn)(ps_txn *t, void *ud);
    void *ud;
    bool ended; /* committed or aborted by ps_txn_commit, which frees it */
} write_call;

static ps_status write_call_run(void *ud)
{
    write_call *w = ud;
    ps_status st = w->fn(w->t, w->ud);
    if (st == PS_OK) {
        st = ps_txn_commit(w->t);
        w->ended = true;
    }
    return st;
}

ps_status ps_store_write_guarded(ps_store *s, ps_status (*fn)(ps_txn *t, void *ud), void *ud)
{
    write_call w = {NULL, fn, ud, false};
    ps_status st = ps_txn_begin(s, true, &w.t);
    if (st != PS_OK)
        return st;
    st = ps_store_guarded(s, write_call_run, &w);
    if (!w.ended) /* fn failed, or a damaged page cut it (or the commit) short */
        ps_txn_abort(w.t);
    return st;
}

bool ps_store_damaged(ps_store *s)
{
    return atomic_load(&s->damaged);
}

long ps_store_broken_writer(ps_store *s)
{
    return st_writer_note_holder(s);
}

void st_writing(ps_txn *t, bool begun)
{
    if (begun)
        writing = t;
    else if (writing == t)
        writing = NULL;
}
