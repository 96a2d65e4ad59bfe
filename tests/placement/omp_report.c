/* One JSON line: which OpenMP runtime ran, its thread counts, every thread's CPUs.
 *
 * Built with gcc -fopenmp (GNU libgomp) and clang -fopenmp (LLVM libomp). The
 * threads are read inside a parallel region, between two barriers, so the whole
 * team is alive and bound (libomp binds at the first region, libgomp at load). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s < 0x20) printf("\\u%04x", *s); else putchar(*s);
    }
    putchar('"');
}

/* The value of "Key:" in a /proc status text, trimmed, or "". */
static void status_field(const char *text, const char *key, char *out, size_t size) {
    out[0] = '\0';
    const char *at = strstr(text, key);
    if (!at) return;
    at += strlen(key);
    while (*at == ' ' || *at == '\t') at++;
    size_t n = strcspn(at, "\n");
    if (n >= size) n = size - 1;
    memcpy(out, at, n);
    out[n] = '\0';
}

static void print_threads(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) { perror("opendir"); exit(1); }
    struct dirent *entry;
    int first = 1;
    printf("\"threads\": [");
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char path[300], text[8192], name[64], cpus[4096];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", entry->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        status_field(text, "Name:", name, sizeof name);
        status_field(text, "\nCpus_allowed_list:", cpus, sizeof cpus);
        printf("%s{\"tid\": %s, \"name\": ", first ? "" : ", ", entry->d_name);
        json_string(name);
        printf(", \"cpus\": ");
        json_string(cpus);
        printf("}");
        first = 0;
    }
    closedir(dir);
    printf("]");
}

static void print_env(void) {
    static const char *prefixes[] = {"OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_",
                                     "BLIS_", "NUMEXPR_"};
    int first = 1;
    printf("\"env\": {");
    for (char **e = environ; *e; e++) {
        for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
            if (strncmp(*e, prefixes[p], strlen(prefixes[p])) != 0) continue;
            const char *eq = strchr(*e, '=');
            if (!eq) break;
            char key[256];
            size_t n = (size_t)(eq - *e) < sizeof key - 1 ? (size_t)(eq - *e) : sizeof key - 1;
            memcpy(key, *e, n);
            key[n] = '\0';
            printf("%s", first ? "" : ", ");
            json_string(key);
            printf(": ");
            json_string(eq + 1);
            first = 0;
            break;
        }
    }
    printf("}");
}

int main(void) {
    Dl_info info;
    const char *runtime = "?";
    if (dladdr((void *)omp_get_max_threads, &info) && info.dli_fname) runtime = info.dli_fname;
    int max_threads = omp_get_max_threads();
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
#pragma omp barrier
#pragma omp master
        {
            printf("{\"runtime\": ");
            json_string(runtime);
            printf(", \"max_threads\": %d, \"team\": %d, \"places\": %d, ", max_threads, team,
                   omp_get_num_places());
            print_threads();
            printf(", ");
            print_env();
            printf("}\n");
            fflush(stdout);
        }
#pragma omp barrier
    }
    return 0;
}
