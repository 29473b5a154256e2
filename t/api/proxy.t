# EventTriggerProxy (t/conf/proxy.conf.in), through real forward proxies:
# Debian's tinyproxy, started here as the test user with configurations and
# logs of its own (t/state/proxy, t/logs/tinyproxy-*.log), never the system's
# service.
#  - an http receiver through the proxy (the proxy logs the request, the
#    receiver sees its Via header) and an https one through CONNECT (the
#    certificate still checked against the site's CA);
#  - Basic proxy authentication from a credentials file: the right ones get
#    through (http and CONNECT); wrong ones get a 407, which is a failed
#    attempt retried (not "refused by the receiver"), with the proxy named in
#    the error; the password is in no log, on no status page, and never
#    reaches the receiver;
#  - a proxy that is not there: refused connections, retried like any other
#    failure, naming the proxy, until it is started and the call goes through;
#  - httpd runs with http_proxy & co. set (t/lib/ETProxyEnv.pm, for the
#    whole suite) to ET_PROXY_ENV_PORT, where a tinyproxy listens while this
#    file runs: sites without EventTriggerProxy or with "off" (http and https)
#    do not use it, "EventTriggerProxy env" sites do.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);
use File::Path qw(make_path);
use MIME::Base64 qw(encode_base64);

plan tests => 36;

# -- set-up --------------------------------------------------------------------

my %pdef;
sub pdefine {
    my $name = shift;
    unless (%pdef) {
        open my $fh, '<', t_path('t_conf', 'proxy.conf') or die "proxy.conf: $!";
        while (<$fh>) { $pdef{$1} = $2 if /^\s*Define\s+(\S+)\s+(\S+)/ }
    }
    return $pdef{$name} // die "no Define $name in t/conf/proxy.conf";
}

ETSecurity::setup();                  # the test CA and the receiver's certificate

# The credentials files (read by httpd at startup: restart once if made).
my $dir = pdefine('ET_PROXY_DIR');
make_path($dir, { mode => 0700 });
chmod 0700, $dir;
my $user = 'et-proxy-user';
my $good = "$dir/good.cred";
my $made = 0;
unless (-e $good) {
    ETSecurity::write_file($good, "$user:pw-" . unpack('H*', ETSecurity::random_bytes(12)) . "\n", 0600);
    $made++;
}
unless (-e "$dir/wrong.cred") {
    ETSecurity::write_file("$dir/wrong.cred", "$user:not-the-password\n", 0600);
    $made++;
}
my($password) = read_file($good) =~ /^\Q$user\E:(\S+)/ or die "bad $good";
if ($made) {
    httpd_stop();
    httpd_start() or die "httpd did not start with the proxy credentials";
}

my %port = map { $_ => pdefine("ET_PROXY_\U$_\E_PORT") } qw(open auth late env tls);
my $rport = define('ET_RECEIVER_PORT');

# tinyproxy NAME [extra config lines]: logs every request and CONNECT at
# LogLevel Connect; its Via header names it.
my %tp;
sub start_tinyproxy {
    my($name, @extra) = @_;
    my $log = t_path('t_logs', "tinyproxy-$name.log");
    my $conf = "$dir/tinyproxy-$name.conf";
    open my $fh, '>', $log or die "$log: $!";
    close $fh;
    ETSecurity::write_file($conf, join("\n",
        "Port $port{$name}", 'Listen 127.0.0.1', 'Timeout 30',
        "LogFile \"$log\"", 'LogLevel Connect', "PidFile \"$dir/tinyproxy-$name.pid\"",
        'MaxClients 20', 'Allow 127.0.0.1', "ViaProxyName \"et-proxy-$name\"",
        @extra, ''), 0600);
    $tp{$name} = { log => $log, pid => ETTest::spawn(
        name => "tinyproxy-$name", port => $port{$name},
        out => t_path('t_logs', 'tinyproxy.out'),
        argv => ['/usr/bin/tinyproxy', '-d', '-c', $conf]) };
}
sub proxy_log { my $n = shift; read_file($tp{$n}{log}) }

start_console();
my $rlog = receiver_log();
start_receiver(truncate => 1);
my $tlog = receiver_log('-tls');
start_tls_receiver(port => $port{tls}, cert => 'server', log => $tlog);
start_tinyproxy('open');
start_tinyproxy('auth', "BasicAuth $user $password");
start_tinyproxy('env');

my $u = uniq('px');
my $log_from = error_log_size();

sub row_of {
    my $id = shift;
    return outbox("SELECT state, attempts, last_status, last_error FROM et_event "
                  . "WHERE oid = " . sql_quote($id))->[0];
}

# Make an event on $site; wait for its call in $log; the call.
sub call_through {
    my($site, $log) = @_;
    my $id = "$site-$u";
    my $res = request($site, POST => '/inproc/member', json => { id => $id, name => 'proxied' });
    die "$site: admin request answered " . $res->code unless $res->code == 201;
    my $calls = wait_calls($id, log => $log);
    return ($id, $calls);
}

# -- the suite's environment -----------------------------------------------------

{
    my $pid = Apache::Test::config()->server->pid;
    my $env = '';
    if ($pid && open my $fh, '<', "/proc/$pid/environ") { local $/; $env = <$fh> // '' }
    my %e = map { split /=/, $_, 2 } grep { /=/ } split /\0/, $env;
    my $want = "http://127.0.0.1:$port{env}";
    ok(!grep({ ($e{$_} // '') ne $want } @ETProxyEnv::VARS) && !exists $e{no_proxy} && !exists $e{NO_PROXY},
       "httpd runs with @ETProxyEnv::VARS=$want and no no_proxy")
        or diag(explain { map { $_ => $e{$_} } @ETProxyEnv::VARS, 'no_proxy' });
}

# -- off ignores the environment (the env proxy is up) ----------------------------------

for my $t (['et_proxy_off', $rlog], ['et_json', $rlog], ['et_proxy_off_tls', $tlog]) {
    my($site, $log) = @$t;
    my($id, $calls) = call_through(@$t);
    my $c = $calls->[0] || {};
    ok(@$calls == 1 && !exists $c->{headers}{via}, "$site: the call arrived directly (no Via)")
        or diag(explain $calls);
    my $plog = proxy_log('env');
    ok(index($plog, $id) < 0 && $plog !~ /CONNECT 127\.0\.0\.1:$port{tls}\b/,
       "$site: the environment's proxy saw nothing of it") or diag($plog);
}

# -- through a proxy, http and https --------------------------------------------------

{
    my($id, $calls) = call_through('et_proxy_http', $rlog);
    my $c = $calls->[0] || {};
    ok(@$calls == 1 && $c->{path} eq "/hooks/proxy-http/v1/member/$id", 'et_proxy_http: the call arrived')
        or diag(explain $calls);
    like($c->{headers}{via} // '', qr/et-proxy-open/, 'et_proxy_http: through the proxy (its Via header)');
    like(proxy_log('open'), qr{Request \(file descriptor \d+\): PUT http://127\.0\.0\.1:$rport/hooks/proxy-http/v1/member/\Q$id\E\?},
         'et_proxy_http: the proxy logged the request');
}
{
    my($id, $calls) = call_through('et_proxy_https', $tlog);
    my $c = $calls->[0] || {};
    ok(@$calls == 1 && $c->{path} eq "/hooks/proxy-https/v1/member/$id" && !exists $c->{headers}{via},
       'et_proxy_https: the call arrived over TLS (end to end: no Via)') or diag(explain $calls);
    like($c->{tls_version} // '', qr/^TLSv1\.[23]$/, 'et_proxy_https: TLS with the receiver');
    like(proxy_log('open'), qr/Request \(file descriptor \d+\): CONNECT 127\.0\.0\.1:$port{tls} /,
         'et_proxy_https: the proxy logged the CONNECT');
}

# -- proxy authentication -----------------------------------------------------------

{
    my($id, $calls) = call_through('et_proxy_auth', $rlog);
    my $c = $calls->[0] || {};
    ok(@$calls == 1 && ($c->{headers}{via} // '') =~ /et-proxy-auth/,
       'et_proxy_auth: the right credentials get through') or diag(explain $calls);
    ok(!exists $c->{headers}{'proxy-authorization'}, 'et_proxy_auth: the receiver gets no proxy credentials');
    like(proxy_log('auth'), qr{PUT http://127\.0\.0\.1:$rport/hooks/proxy-auth/v1/member/\Q$id\E\?},
         'et_proxy_auth: the proxy logged the request');
}
{
    my($id, $calls) = call_through('et_proxy_auth_tls', $tlog);
    is(scalar @$calls, 1, 'et_proxy_auth_tls: the right credentials get through CONNECT');
    like(proxy_log('auth'), qr/CONNECT 127\.0\.0\.1:$port{tls} /, 'et_proxy_auth_tls: the proxy logged the CONNECT');
}
for my $t (['et_proxy_badauth', qr{PUT http://127\.0\.0\.1:$rport/hooks/proxy-badauth/}, $rlog,
             qr{(?:407|reset).*\(through proxy http://127\.0\.0\.1:$port{auth}\)}],
           ['et_proxy_badauth_tls', qr{CONNECT 127\.0\.0\.1:$port{tls} }, $tlog,
             qr{CONNECT tunnel failed, response 40[17] \(through proxy http://127\.0\.0\.1:$port{auth}\)}]) {
    my($site, $req, $log, $err) = @$t;
    my $id = "$site-$u";
    request($site, POST => '/inproc/member', json => { id => $id });
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{attempts} >= 2 }, 20);
    ok($row && $row->{state} == 0 && $row->{attempts} >= 2 && $row->{last_status} == 0,
       "$site: refused by the proxy: a failed attempt, retried (pending, no HTTP status)")
        or diag(explain $row);
    like($row && $row->{last_error} // '', $err, "$site: the error says the proxy refused, and which")
        or diag(explain $row);
    is(scalar calls_for_id($id, $log), 0, "$site: the receiver got nothing");
}

# -- a proxy that is not there yet ------------------------------------------------------

{
    my $site = 'et_proxy_late';
    my $id = "$site-$u";
    request($site, POST => '/inproc/member', json => { id => $id });
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{attempts} >= 2 }, 20);
    ok($row && $row->{state} == 0 && $row->{attempts} >= 2 && $row->{last_status} == 0
       && ($row->{last_error} // '') =~ m{onnect.*\(through proxy http://127\.0\.0\.1:$port{late}\)},
       "$site: refused by the absent proxy, retried, the proxy named") or diag(explain $row);
    is(scalar calls_for_id($id, $rlog), 0, "$site: nothing arrived meanwhile");
    start_tinyproxy('late');
    my $calls = wait_calls($id, log => $rlog, timeout => 30);
    is(scalar @$calls, 1, "$site: the call goes through once the proxy is up");
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 1 }, 10);
    ok($row && $row->{state} == 1 && $row->{attempts} >= 3, "$site: delivered on a later attempt")
        or diag(explain $row);
    like(proxy_log('late'), qr{PUT http://127\.0\.0\.1:$rport/hooks/proxy-late/v1/member/\Q$id\E\?},
         "$site: through the proxy");
}

# -- env follows the environment -----------------------------------------------------

{
    my($id, $calls) = call_through('et_proxy_env', $rlog);
    ok(@$calls == 1 && ($calls->[0]{headers}{via} // '') =~ /et-proxy-env/,
       'et_proxy_env: the call went through the environment\'s proxy') or diag(explain $calls);
    like(proxy_log('env'), qr{PUT http://127\.0\.0\.1:$rport/hooks/proxy-env/v1/member/\Q$id\E\?},
         'et_proxy_env: the proxy logged it');
    ($id, $calls) = call_through('et_proxy_env_tls', $tlog);
    is(scalar @$calls, 1, 'et_proxy_env_tls: the https call arrived');
    like(proxy_log('env'), qr/CONNECT 127\.0\.0\.1:$port{tls} /, 'et_proxy_env_tls: through CONNECT (https_proxy)');
}

# -- no credentials anywhere -----------------------------------------------------------

{
    my $st = status_json() || {};
    my($auth) = grep { $_->{site} eq 'et_proxy_auth' } @{ $st->{sites} || [] };
    is($auth && $auth->{proxy}, "http://127.0.0.1:$port{auth}", 'the status page shows the proxy of a site')
        or diag(explain $auth);
    my $page = request('main', GET => '/et-status')->content . request('main', GET => '/et-status?json')->content;
    my $text = error_log_since($log_from);
    my $b64 = encode_base64("$user:$password", '');
    ok(index($text, $password) < 0 && index($text, $b64) < 0 && index($page, $password) < 0,
       'the proxy password is in neither the error log nor the status page');
    like($text, qr{ET01001: will retry in \d+ms txn=\S+ site=et_proxy_badauth .*\(through proxy http://127\.0\.0\.1:$port{auth}\)},
         'the per-attempt log line names the proxy of a failure');
}
