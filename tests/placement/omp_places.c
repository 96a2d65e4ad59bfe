/* Reports what an OpenMP runtime sees of its places: one line per thread. */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
#include <stdio.h>

int main(void) {
    printf("places %d threads %d\n", omp_get_num_places(), omp_get_max_threads());
    for (int p = 0; p < omp_get_num_places(); p++) {
        int ids[1024];
        int n = omp_get_place_num_procs(p);
        omp_get_place_proc_ids(p, ids);
        printf("place %d:", p);
        for (int i = 0; i < n; i++) printf(" %d", ids[i]);
        printf("\n");
    }
#pragma omp parallel
    {
        /* Spin a little so every thread has been scheduled where it is bound. */
        volatile double x = 0;
        for (int i = 0; i < 2000000; i++) x += i;
#pragma omp critical
        printf("thread %d place %d cpu %d\n", omp_get_thread_num(), omp_get_place_num(), sched_getcpu());
    }
    return 0;
}
