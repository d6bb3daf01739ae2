/* libFuzzer target over decode + apply. Built with clang when OVHA_FUZZ=ON;
 * the gcc smoke driver (tests/fuzz_smoke.c) calls the same entry point.
 *
 * One FSM lives across inputs so that later inputs meet a populated state;
 * it starts with gateways and pools so that valid commands get far. Every
 * input must leave the instance consistent with the invariants. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fsm/fsm.h"
#include "fsm/tests/fsm_test_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fsm *fuzz_fsm;
static unsigned fuzz_runs;

static void fuzz_reset(void)
{
    struct proto_result r;
    fsm_free(fuzz_fsm);
    fuzz_fsm = NULL;
    if (fsm_new(NULL, &fuzz_fsm) != 0) {
        abort();
    }
    fsmt_heartbeat(fuzz_fsm, "gw-1", 1000, &r);
    fsmt_heartbeat(fuzz_fsm, "gw-2", 1000, &r);
    fsmt_pool(fuzz_fsm, "p4", "100.64.0.0/28", 60000, 1000, &r);
    fsmt_pool(fuzz_fsm, "p6", "fd00::/124", 60000, 1000, &r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_result r;
    char err[256];
    if (fuzz_fsm == NULL || ++fuzz_runs % 5000 == 0) {
        fuzz_reset();
    }
    if (fsm_apply(fuzz_fsm, data, size, &r) != 0) {
        abort(); /* no allocation failure is injected here */
    }
    if (r.status > PROTO_STATUS_REFUSED || r.reason >= PROTO_R_MAX ||
        r.nrefs > PROTO_RESULT_MAX_REFS) {
        abort();
    }
    if (fsm_check_invariants(fuzz_fsm, err, sizeof(err)) != 0) {
        abort();
    }
    return 0;
}
