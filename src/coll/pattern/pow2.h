/* Power-of-two rank arithmetic with no I/O, for the recursive algorithms' non-power-of-two
 * fold (fold.h). */
#ifndef CGLOO_PATTERN_POW2_H
#define CGLOO_PATTERN_POW2_H

/* pow2_floor: the largest power of two not above n (n >= 1). */
static inline int pow2_floor(int n)
{
    int p = 1;
    while (p <= n / 2)
        p *= 2;
    return p;
}

/* pow2_log2: k such that 2^k is the largest power of two not above n (n >= 1). */
static inline int pow2_log2(int n)
{
    int k = 0;
    while (n >> (k + 1))
        k++;
    return k;
}

#endif
