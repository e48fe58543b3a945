/*
 * kernel_mix.c - a small program whose memory access stream mixes regular and
 * irregular patterns, recorded with valgrind lackey as the demo trace
 * experiments/traces/kernel_mix.lackey.gz (see ../record.sh and ../README.md).
 *
 * Phases, in order (working set about 0.9 MiB in all):
 *   1. fill    - write a 256 KiB int array sequentially (stores, streaming);
 *   2. sum     - read it back sequentially (loads, streaming);
 *   3. stride  - read-modify-write every 1 KiB, then every 64 B (one access
 *                per page, then one per cache line);
 *   4. hash    - open-addressing hash table, 4096 slots of key/value pairs
 *                (64 KiB): 2500 inserts and 5000 lookups at random keys;
 *   5. sort    - recursive quicksort of 3000 random ints (data-dependent
 *                accesses plus stack traffic);
 *   6. chase   - pointer chase over a linked list of 8192 64-byte nodes
 *                (512 KiB) linked in a shuffled order: one dependent load per
 *                cache line, no spatial locality.
 *
 * Everything is deterministic: a fixed-seed xorshift generator, static arrays
 * (no malloc), and a checksum printed at the end so the compiler keeps all the
 * work.
 */
#include <stdint.h>
#include <stdio.h>

#define ARRAY_INTS 65536          /* 256 KiB */
#define HASH_SLOTS 4096           /* power of two; 16 B per slot = 64 KiB */
#define HASH_INSERTS 2500
#define HASH_LOOKUPS 5000
#define SORT_INTS 3000
#define LIST_NODES 8192           /* 64 B per node = 512 KiB */
#define CHASE_ROUNDS 2

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static int32_t array[ARRAY_INTS];

struct slot {
    uint64_t key;                 /* 0 = empty */
    uint64_t value;
};
static struct slot table[HASH_SLOTS];

static int32_t sort_data[SORT_INTS];

struct node {
    struct node *next;
    uint64_t payload;
    uint64_t pad[6];              /* one node per 64-byte cache line */
} __attribute__((aligned(64)));
static struct node nodes[LIST_NODES];
static uint32_t order[LIST_NODES];

static uint64_t phase_fill_sum(void)
{
    for (int i = 0; i < ARRAY_INTS; i++)
        array[i] = (int32_t)(i * 2654435761u);
    uint64_t sum = 0;
    for (int i = 0; i < ARRAY_INTS; i++)
        sum += (uint32_t)array[i];
    return sum;
}

static uint64_t phase_stride(void)
{
    /* at -O1 these compile to add/xor with a memory operand: lackey's M */
    int32_t *a = array;
    for (int i = 0; i < ARRAY_INTS; i += 256)       /* every 1 KiB */
        a[i] += 1;
    for (int i = 0; i < ARRAY_INTS; i += 16)        /* every 64 B line */
        a[i] ^= 0x5a5a;
    uint64_t sum = 0;
    for (int i = 7; i < ARRAY_INTS; i += 64)        /* every 256 B */
        sum += (uint32_t)a[i];
    return sum;
}

static uint64_t hash_key(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static void hash_insert(uint64_t key, uint64_t value)
{
    uint64_t i = hash_key(key) & (HASH_SLOTS - 1);
    while (table[i].key != 0 && table[i].key != key)
        i = (i + 1) & (HASH_SLOTS - 1);
    table[i].key = key;
    table[i].value = value;
}

static uint64_t hash_lookup(uint64_t key)
{
    uint64_t i = hash_key(key) & (HASH_SLOTS - 1);
    while (table[i].key != 0) {
        if (table[i].key == key)
            return table[i].value;
        i = (i + 1) & (HASH_SLOTS - 1);
    }
    return 0;
}

static uint64_t phase_hash(void)
{
    uint64_t saved = rng_state;
    for (int i = 0; i < HASH_INSERTS; i++)
        hash_insert((rng() % 5000) + 1, (uint64_t)i);
    rng_state = saved;            /* half the lookups hit, half miss */
    uint64_t found = 0;
    for (int i = 0; i < HASH_LOOKUPS; i++)
        found += hash_lookup((rng() % 10000) + 1);
    return found;
}

static void quicksort(int32_t *v, int lo, int hi)
{
    while (lo < hi) {
        int32_t pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                int32_t t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        /* recurse into the smaller part, loop on the larger */
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
}

static uint64_t phase_sort(void)
{
    for (int i = 0; i < SORT_INTS; i++)
        sort_data[i] = (int32_t)(rng() & 0x7fffffff);
    quicksort(sort_data, 0, SORT_INTS - 1);
    uint64_t check = 0;
    for (int i = 1; i < SORT_INTS; i++)
        check += sort_data[i] >= sort_data[i - 1];
    return check;
}

static uint64_t phase_chase(void)
{
    for (uint32_t i = 0; i < LIST_NODES; i++)
        order[i] = i;
    for (uint32_t i = LIST_NODES - 1; i > 0; i--) {   /* Fisher-Yates */
        uint32_t j = (uint32_t)(rng() % (i + 1));
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < LIST_NODES; i++) {
        struct node *n = &nodes[order[i]];
        n->next = &nodes[order[(i + 1) % LIST_NODES]];
        n->payload = i;
    }
    uint64_t sum = 0;
    struct node *p = &nodes[order[0]];
    for (int r = 0; r < CHASE_ROUNDS; r++) {
        for (uint32_t k = 0; k < LIST_NODES; k++) {
            sum += p->payload;
            p = p->next;
        }
    }
    return sum;
}

int main(void)
{
    uint64_t checksum = 0;
    checksum += phase_fill_sum();
    checksum += phase_stride();
    checksum += phase_hash();
    checksum += phase_sort();
    checksum += phase_chase();
    printf("kernel_mix checksum %llu\n", (unsigned long long)checksum);
    return 0;
}
