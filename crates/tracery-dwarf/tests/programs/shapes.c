/* Shapes the fixtures do not have: enums, bit-fields, unions, a linked list, NULL, long
 * double, function pointers, a 2-D array, typedefs, a static local (an absolute address that
 * a PIE must relocate) and a char array. Used by decode_shapes.rs; values are asserted
 * there, so change them only together. It prints `ready` and starts on one stdin line. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum color { RED = 1, GREEN = 2, BLUE = 4 };
struct flags { unsigned a : 3; signed b : 5; unsigned c : 1; };
union num { int i; float f; };
struct node { int value; struct node *next; };
typedef struct node node_t;

volatile long sink;

int twice(int x) { return 2 * x; }

__attribute__((noinline)) int shapes(enum color c, enum color mixed, struct flags fl, union num n,
                                     node_t *list, const char *none, long double ld,
                                     int (*fn)(int), int16_t neg, void *opaque)
{
    static int calls = 7;
    calls++;
    char word[8] = "hi";
    int grid[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
    sink = c + mixed + fl.a + n.i + list->value + (none == 0) + (int)ld + fn(1) + neg + calls + word[0] + grid[1][2] + (opaque != 0); /* @here */
    return (int)sink;
}

int main(void)
{
    char line[8];
    node_t third = { 3, NULL }, second = { 2, &third }, first = { 1, &second };
    struct flags fl = { 5, -3, 1 };
    union num n = { .i = 0x40490fdb };
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    for (;;) {
        shapes(GREEN, (enum color)(RED | BLUE), fl, n, &first, NULL, 2.5L, twice, -300, &first);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}
