/*
 * /init of the L2 guest in the nested VFIO test: one static program, no shell.
 *
 * Under TCG inside TCG every new process costs seconds, so PID 1 does everything itself:
 *   1. prints "NEST-L2: pci <bdf> <vendor>:<device>" for every PCI function;
 *   2. for QEMU's edu device (1234:11e8): enables memory decoding, maps BAR0 through
 *      /dev/mem, reads the ID register (offset 0) and does the liveness check (write x
 *      to offset 4, read back ~x), printing
 *        "NEST-L2: edu <bdf> bar0=<addr> id=<ID> liveness=<read back after 0x12345678>";
 *   3. prints the marker "NEST-L2-MARKER edu-devices=<n> ok=<1 if every check passed>";
 *   4. loads the modules in /kmod (evdev, button) and waits for the ACPI power button (KEY_POWER on
 *      any /dev/input/event*), then prints "NEST-L2: power button, powering off" and
 *      powers off. This is the agent's graceful shutdown.
 * Everything goes to the serial console (the kernel opens /dev/console for PID 1).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EDU_ID 0x010000EDu
#define LIVENESS_IN 0x12345678u
#define MAX_INPUTS 16

static double uptime(void) {
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int read_text(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static int write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n < 0 ? -1 : 0;
}

static int device_file(const char *bdf, const char *name, char *buf, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", bdf, name);
    return read_text(path, buf, size);
}

/* ID and liveness registers of one edu device through its BAR0; 1 when both are right. */
static int check_edu(const char *bdf) {
    char path[512], resource[256];
    unsigned long long bar = 0;
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/enable", bdf);
    write_text(path, "1");
    if (device_file(bdf, "resource", resource, sizeof resource) != 0 || sscanf(resource, "%llx", &bar) != 1) {
        printf("NEST-L2: edu %s: cannot read its resource file\n", bdf);
        return 0;
    }
    int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
    void *map = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)bar);
    if (map == MAP_FAILED) {
        printf("NEST-L2: edu %s: cannot map BAR0 at 0x%llx through /dev/mem: %m\n", bdf, bar);
        return 0;
    }
    volatile uint32_t *regs = map;
    uint32_t id = regs[0];
    regs[1] = LIVENESS_IN;
    uint32_t back = regs[1];
    munmap(map, 4096);
    close(fd);
    printf("NEST-L2: edu %s bar0=0x%016llx id=0x%08X liveness=0x%08X\n", bdf, bar, id, back);
    return id == EDU_ID && back == (uint32_t)~LIVENESS_IN;
}

static void check_devices(void) {
    struct dirent **entries;
    int count = scandir("/sys/bus/pci/devices", &entries, NULL, alphasort);
    int edus = 0, ok = 1;
    for (int i = 0; i < count; i++) {
        const char *bdf = entries[i]->d_name;
        char vendor[32], device[32];
        if (bdf[0] == '.' || device_file(bdf, "vendor", vendor, sizeof vendor) != 0 ||
            device_file(bdf, "device", device, sizeof device) != 0)
            continue;
        printf("NEST-L2: pci %s %s:%s\n", bdf, vendor, device);
        if (strcmp(vendor, "0x1234") == 0 && strcmp(device, "0x11e8") == 0) {
            edus++;
            ok &= check_edu(bdf);
        }
    }
    printf("NEST-L2-MARKER edu-devices=%d ok=%d (uptime %.2f)\n", edus, edus > 0 && ok, uptime());
}

static void load_modules(void) {
    struct dirent **entries;
    int count = scandir("/kmod", &entries, NULL, alphasort);
    for (int i = 0; i < count; i++) {
        char path[512];
        if (!strstr(entries[i]->d_name, ".ko")) continue;
        snprintf(path, sizeof path, "/kmod/%s", entries[i]->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0)
            printf("NEST-L2: cannot load %s: %m\n", path);
        if (fd >= 0) close(fd);
    }
}

/* Watch every input event device (re-scanned each second: button may register late). */
static void wait_for_power_button(void) {
    struct pollfd fds[MAX_INPUTS];
    for (int i = 0; i < MAX_INPUTS; i++) fds[i] = (struct pollfd){.fd = -1, .events = POLLIN};
    for (;;) {
        for (int i = 0; i < MAX_INPUTS; i++) {
            char path[64];
            snprintf(path, sizeof path, "/dev/input/event%d", i);
            if (fds[i].fd < 0) fds[i].fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (poll(fds, MAX_INPUTS, 1000) <= 0) continue;
        for (int i = 0; i < MAX_INPUTS; i++) {
            struct input_event event;
            if (fds[i].fd < 0 || !(fds[i].revents & POLLIN)) continue;
            if (read(fds[i].fd, &event, sizeof event) == (ssize_t)sizeof event && event.type == EV_KEY &&
                event.code == KEY_POWER && event.value == 1) {
                printf("NEST-L2: power button, powering off (uptime %.2f)\n", uptime());
                sync();
                reboot(RB_POWER_OFF);
            }
        }
    }
}

int main(void) {
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("NEST-L2: booted (uptime %.2f)\n", uptime());
    check_devices();
    load_modules();
    wait_for_power_button();
    return 0;
}
