/* greet: an upstream project in miniature, built by recipes/greet from a git commit. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    if (strlen(who) > 64) {
        fputs("greet: a name of at most 64 characters, please\n", stderr);
        return 2;
    }
    printf("Greetings, %s, from a package Kiln built!\n", who);
    return 0;
}
