# The module loaded where no site sends (no EventTriggerEndpoint anywhere):
# httpd starts without a dispatcher and says so (ET00005), the console
# answers and nothing is captured (no outbox is made), and the status page
# answers 503 without an error line for each request.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);
use LWP::UserAgent ();

plan tests => 6;

my $port = ops_define('ET_OPS_MINI_PORT');
my $dir = t_path('t_dir', 'tmp', 'ops_no_site');
remove_tree($dir);
make_path("$dir/logs");
my $conf = mini_httpd_conf($dir, [$port], <<"CONF");
LogLevel eventtrigger:info
EventTriggerStore sqlite3:$dir/state/outbox.db
@{[MINI_CONSOLE]}
<Location /et-status>
    SetHandler eventtrigger-status
</Location>
CONF
my $pid = mini_httpd_start($conf, $port, "$dir/logs/stdout");
my $ua = LWP::UserAgent->new(timeout => 10);

my $res = $ua->post("http://127.0.0.1:$port/inproc/member",
                    'Content-Type' => 'application/json',
                    Content => '{"id":"no-site-1"}');
is($res->code, 201, 'the console answers');
is($ua->get("http://127.0.0.1:$port/et-status")->code, 503,
   'the status page answers 503: nothing is sent');
is($ua->get("http://127.0.0.1:$port/et-status?json")->code, 503,
   'and again');
mini_httpd_stop($pid);

my @log = read_lines("$dir/logs/error_log");
ok(scalar(grep { /ET00005: no site has an EventTriggerEndpoint/ } @log),
   'httpd says no dispatcher is started (ET00005)') or diag(join '', @log);
is(scalar(grep { /ET00050/ } @log), 0,
   'the status page logs no error for it (ET00050)')
    or diag(join '', grep { /ET000/ } @log);
ok(!-e "$dir/state/outbox.db", 'no outbox was made');
