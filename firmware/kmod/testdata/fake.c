/* A stand-in kernel module: only its .modinfo section matters. Rebuild
 * fake.ko with: gcc -c -o fake.ko fake.c */
__attribute__((section(".modinfo"), used)) static const char modinfo[] =
	"license=GPL\0depends=stp,llc-x\0retpoline=Y\0name=fake\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions ";
