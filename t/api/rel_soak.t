# A small soak: bench/soak.sh with 1,000 admin operations (its own httpd,
# console and receiver, on ports above the test server's, in a temporary
# directory), while it kills httpd children and the dispatcher with SIGKILL
# and restarts httpd gracefully. Nothing lost, nothing out of order. (The
# full soak, 10,000 operations, is `bash bench/soak.sh`.)
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(t_path);

my $soak = t_path('t_dir', '..', 'bench', 'soak.sh');
# ET_SOAK_HTTPD: Apache::Test does not pass HTTPD through to the tests
my $httpd = $ENV{ET_SOAK_HTTPD} // $ENV{HTTPD} // '/usr/sbin/apache2';
local $ENV{HTTPD} = $httpd;
plan skip_all => "no $soak" unless -f $soak;
plan skip_all => "no $httpd (set HTTPD)" unless -x $httpd;
plan tests => 6;

my $port = Apache::Test::config()->{vars}->{port} + 50;
# kept in t/logs/soak when something is wrong, removed otherwise
my $dir = t_path('t_logs', 'soak');
system('rm', '-rf', $dir);
local $ENV{SOAK_DRAIN} = 90;
local $ENV{SOAK_DIR} = $dir;
# faster chaos than the full soak's (2s, 5s, 7s): the run is short
local $ENV{SOAK_KILL_CHILD} = 1;
local $ENV{SOAK_KILL_DISPATCHER} = 3;
local $ENV{SOAK_GRACEFUL} = 2;
my $t0 = time;
open my $fh, '-|', 'bash', '-c', 'exec bash "$0" "$@" 2>&1', $soak, '--ops', 1000,
    '--clients', 6, '--objects', 60, '--port', $port
    or die "cannot run $soak: $!";
my $out = do { local $/; <$fh> } // '';
close $fh;
my $rc = $? >> 8;
note($out);

my %f = $out =~ /^soak: (.*)$/m ? map { split /=/ } split ' ', $1 : ();
my @chaos = $out =~ /children killed (\d+), dispatchers killed (\d+), graceful restarts (\d+)/;
ok(@chaos == 3 && !grep({ !$_ } @chaos), "soak: children killed, dispatcher killed, graceful "
   . "restarts (@chaos)") or diag($out);
cmp_ok($f{sent} // 0, '>=', 900, 'soak: most operations confirmed (' . ($f{sent} // '?') . ')')
    or diag($out);
is($f{lost}, 0, 'soak: nothing lost');
is($f{order_violations}, 0, 'soak: no per-object order violation');
is($rc, 0, 'soak: exit status 0') or diag("see $dir");
cmp_ok(time - $t0, '<', 120, 'soak: done in under 2 minutes (' . (time - $t0) . 's)');
