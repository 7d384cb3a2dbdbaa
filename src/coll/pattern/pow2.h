/* Power-of-two rank arithmetic with no I/O, for the recursive algorithms' non-power-of-two
 * folds. */
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

#endif
