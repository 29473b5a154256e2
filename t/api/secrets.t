# No secret reaches a log line, the status page or etctl: httpd is
# restarted at LogLevel trace8 (-D ET_TRACE8, t/conf/security.conf.in), the
# signed sites (inline whsec, whsec from files, an Authorization header from
# a file), the mutual TLS sites (client key) and a retried call make their
# calls, and then the error log, every page of the status handler and
# every etctl command are searched for each secret and each line of the
# client key. The secret files are 0600, as httpd requires.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);

plan tests => 4 + 3 + 4 + 5 + 1;

ETSecurity::setup();
my $secrets = secrets_to_hide();

# the secret files httpd read are not readable by others
my @files = map { sec_file($_) } qw(secret2.whsec secret3.whsec bearer.txt client.key client-both.pem);
is_deeply([grep { ((stat $_)[2] & 07077) != 0 } @files], [],
          'the secret files are 0600 (httpd refuses them readable by everyone)');

# -- traffic at LogLevel trace8 ---------------------------------------------------------
my $defines = defines_now();
my $mark = error_log_size();
ok(httpd_restart_with(join ' ', grep { length } $defines, 'ET_TRACE8'),
   'httpd restarted at LogLevel trace8');
# trace8 lines come with traffic, not at startup: ask, and poll with a deadline
ok(wait_for(sub { request('et_sec_signed', GET => '/');
                  error_log_since($mark) =~ /\[[\w.]+:trace8\]/ }, 20),
   'and it logs at trace8');

start_console();
my $rcv = start_receiver(truncate => 1, status => 503);
my $mtls_log = receiver_log('-mtls');
start_tls_receiver(port => sdefine('ET_SEC_TLS_MTLS_PORT'), log => $mtls_log,
                   cert => 'server', client_ca => 'ca');

my $u = uniq('secret');
my @ids;
my $retry = "retried-$u";
request('et_sec_signed', POST => '/proxy/member', json => { id => $retry });
wait_calls($retry, n => 1);               # refused (503), will be retried
stop_proc($rcv);
$rcv = start_receiver(status => 200);
for my $s (['et_sec_signed', "j-$u"], ['et_sec_signed_form', "f-$u"],
           ['et_sec_tls_mtls', "t-$u"], ['et_sec_tls_mtls_one', "o-$u"]) {
    request($s->[0], POST => '/inproc/key', json => { id => $s->[1], apikey => 'k' });
    push @ids, $s->[1];
}
my $n = 0;
for my $id ($retry, @ids) {
    my $log = $id =~ /^[to]-/ ? $mtls_log : undef;
    $n++ if @{ wait_calls($id, log => $log, n => $id eq $retry ? 2 : 1) };
}
is($n, 1 + @ids, 'every call arrived (one of them retried)');

# -- the places secrets must not reach ------------------------------------------------------
sub leaks {
    my $text = shift;
    return [sort grep { index($text, $secrets->{$_}) >= 0 } keys %$secrets];
}

my $trace_log = error_log_since($mark);
ok(length $trace_log > 10_000, 'the trace8 log has something to search (' . length($trace_log) . ' bytes)');
is_deeply(leaks($trace_log), [], 'no secret in the error log at LogLevel trace8');

ok(httpd_restart_with($defines), 'httpd restarted at the normal LogLevel');
is_deeply(leaks(ETSecurity::read_file(t_path('t_logs', 'error_log'))), [],
          'no secret anywhere in the whole error log of the run');

for my $page ('', '?json', '?prometheus') {
    my $res = request('main', GET => "/et-status$page");
    ok($res->is_success && !@{ leaks($res->content) }, "no secret on the status page /et-status$page")
        or diag(explain [$res->code, leaks($res->content)]);
}
{
    my $res = request('et_sec_signed', GET => '/et-status?json');
    ok($res->is_success && !@{ leaks($res->content) }, 'nor on a signed site\'s own status page');
}

my $etctl = t_path('t_dir', '..', 'etctl');
SKIP: {
    skip 'etctl was not built', 5 unless -x $etctl;
    my $store = 'sqlite3:' . outbox_file();
    my $txn = outbox('SELECT txn FROM et_event WHERE oid = ' . sql_quote("j-$u"))->[0]{txn} // '';
    for my $cmd (['stats'], ['-n', '1000', 'list', 'all'], ['list', 'dead'], ['show', $txn]) {
        my $out = `\Q$etctl\E -s \Q$store\E @{[ join ' ', map { quotemeta } @$cmd ]} 2>&1`;
        ok($? == 0 && !@{ leaks($out) }, "no secret in etctl @$cmd")
            or diag(explain [$? >> 8, leaks($out), substr($out, 0, 300)]);
    }
    my $show = `\Q$etctl\E -s \Q$store\E show \Q$txn\E 2>&1`;
    like($show, qr/\Q$txn\E/, 'etctl show found the signed event');
}
