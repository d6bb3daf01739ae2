/* fsm test binary: runs every group and prints "N passed, N failed". */
#include <stdio.h>

int fsm_test_commands(void);
int fsm_test_property(void);

int main(void)
{
    int groups = 2;
    int failed = 0;
    failed += fsm_test_commands() != 0;
    failed += fsm_test_property() != 0;
    printf("%d passed, %d failed (test groups)\n", groups - failed, failed);
    return failed != 0;
}
