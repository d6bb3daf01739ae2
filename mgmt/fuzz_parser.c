/* libFuzzer target for the management parser and the status parser.
 *
 * Each input is parsed whole and again in chunks whose size comes from the
 * first byte; the two event dumps must be identical (the incremental
 * property). Every reply block also goes through mgmt_status_parse. Small
 * limits make the limit and resync paths reachable with short inputs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/mgmt.h"
#include "mgmt/tests/mgmt_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    const struct mgmt_limits lim = {
        .max_line = 200,
        .max_env = 16,
        .max_block = 2048,
        .max_reply_rows = 32,
    };
    size_t chunk = 1 + data[0] % 17;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    struct mgmt_test_rec whole, split;
    mgmt_test_rec_init(&whole);
    mgmt_test_rec_init(&split);
    whole.keep_status = true;
    split.keep_status = true;
    if (mgmt_test_parse(s, n, 0, &lim, &whole) != 0 ||
        mgmt_test_parse(s, n, chunk, &lim, &split) != 0) {
        abort();
    }
    if (whole.dump.len != split.dump.len ||
        (whole.dump.len > 0 &&
         memcmp(whole.dump.data, split.dump.data, whole.dump.len) != 0)) {
        abort(); /* feeding in pieces changed the events */
    }
    mgmt_test_rec_free(&whole);
    mgmt_test_rec_free(&split);
    return 0;
}
