# `apachectl configtest` catches bad values and inconsistencies
# (docs/directives.md; mod_eventtrigger_config.c): for each, a minimal
# configuration with the built module is written to t/tmp/ops_configtest/
# and checked with `httpd -t -f FILE` (no server is started). Values refused
# while the file is read must fail with httpd's "AH00526: Syntax error on
# line N of FILE:" and the module's message; inconsistencies found on the
# whole configuration (check_config) fail with their ET tag; warnings keep
# "Syntax OK". A valid configuration passes first, so that a failure below
# is the case's own.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);

my $ROOT = t_path('t_dir', 'tmp', 'ops_configtest');
my $PORT = ops_define('ET_OPS_MINI_PORT');       # never bound: -t only
my $root_user = $> == 0;
my $SECRET = 'whsec_' . 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';   # 24 bytes
my $BAD_SECRET = 'whsec_$$not*base64$$';

remove_tree($ROOT);
make_path($ROOT);
# leave nothing unreadable behind (copies of the tree, e.g. by .ci/sanitizers)
END {
    chmod 0700, "$ROOT/readonly", "$ROOT/secret-unreadable" if $ROOT;
    remove_tree($ROOT) if $ROOT && -d $ROOT;
}

# secret files
my %file;
sub write_file {
    my($name, $text, $mode) = @_;
    my $f = "$ROOT/$name";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
    chmod $mode, $f;
    return $file{$name} = $f;
}
write_file('secret-ok', "$SECRET\n", 0600);
write_file('secret-unreadable', "$SECRET\n", 0000);
write_file('secret-world', "$SECRET\n", 0644);
write_file('a-file', "not a directory\n", 0644);
make_path("$ROOT/readonly");
chmod 0555, "$ROOT/readonly";

# Each case: name; main => [lines], vhost => [lines] (in a site with an
# endpoint), site2 => [lines] (a second <VirtualHost>, no endpoint unless
# given); the first of these lines is "the line" the error must name,
# unless bad => 'main'|'vhost'|'site2' says which list holds it or at =>
# qr// finds it. Expectations: syntax => qr/MESSAGE/ (AH00526 at the line),
# or tag => 'ET000nn' with fail => 1|0, and re => qr// on the output.
my @cases = (
    # values refused while the file is read
    { name => 'bad EventTriggerFormat', vhost => ['EventTriggerFormat xml'],
      syntax => qr/EventTriggerFormat: 'xml' is not a format; use json or form/ },
    { name => 'bad duration (EventTriggerTimeout 5x)', vhost => ['EventTriggerTimeout 5x'],
      syntax => qr/EventTriggerTimeout: '5x' is not a duration/ },
    { name => 'duration below the minimum (EventTriggerConnectTimeout 1ms)',
      vhost => ['EventTriggerConnectTimeout 1ms'],
      syntax => qr/EventTriggerConnectTimeout: '1ms' is not a duration of at least 10ms/ },
    { name => 'bad delay in EventTriggerRetry', vhost => ['EventTriggerRetry 0 5s soon'],
      syntax => qr/EventTriggerRetry: bad delay 'soon'/ },
    { name => 'bad EventTriggerPollInterval', main => ['EventTriggerPollInterval never'],
      syntax => qr/EventTriggerPollInterval: 'never' is not a duration/ },
    { name => 'bad EventTriggerLease', main => ['EventTriggerLease 0'],
      syntax => qr/EventTriggerLease: '0' is not a duration of at least 1000ms/ },
    { name => 'EventTriggerEndpoint with an ftp: scheme',
      vhost => ['EventTriggerEndpoint ftp://hooks.example.com/cb'],
      syntax => qr/EventTriggerEndpoint: scheme must be http or https/ },
    { name => 'EventTriggerEndpoint with a query',
      vhost => ['EventTriggerEndpoint https://hooks.example.com/cb?x=1'],
      syntax => qr/EventTriggerEndpoint: URL must not have a query/ },
    { name => 'EventTriggerEndpoint with user info',
      vhost => ['EventTriggerEndpoint https://user:pw@hooks.example.com/cb'],
      syntax => qr/EventTriggerEndpoint: URL must not contain user info/ },
    { name => 'EventTriggerEndpoint with port 0',
      vhost => ['EventTriggerEndpoint http://hooks.example.com:0/cb'],
      syntax => qr/EventTriggerEndpoint: port must be a number from 1 to 65535/ },
    { name => 'EventTriggerStore in a VirtualHost',
      vhost => ["EventTriggerStore sqlite3:$ROOT/vhost.db"],
      syntax => qr/EventTriggerStore is only allowed in the main server configuration, not in <VirtualHost>/ },
    { name => 'EventTriggerStore of an unknown kind', main => ['EventTriggerStore mysql:db'],
      syntax => qr/EventTriggerStore: use sqlite3:PATH or pgsql:CONNINFO/ },
    { name => 'EventTriggerWorkers 0', main => ['EventTriggerWorkers 0'],
      syntax => qr/EventTriggerWorkers: a number of calls at once between 1 and 256 is required/ },
    { name => 'EventTriggerWorkers 257', main => ['EventTriggerWorkers 257'],
      syntax => qr/EventTriggerWorkers: a number of calls at once between 1 and 256 is required/ },
    { name => 'EventTriggerWorkers in a VirtualHost', vhost => ['EventTriggerWorkers 4'],
      syntax => qr/EventTriggerWorkers is only allowed in the main server configuration/ },
    { name => 'EventTriggerLease in a VirtualHost', vhost => ['EventTriggerLease 90s'],
      syntax => qr/EventTriggerLease is only allowed in the main server configuration/ },
    { name => 'EventTriggerRetention in a VirtualHost', vhost => ['EventTriggerRetention 1d'],
      syntax => qr/EventTriggerRetention is only allowed in the main server configuration/ },
    { name => 'bad EventTriggerRetention', main => ['EventTriggerRetention soon'],
      syntax => qr/EventTriggerRetention: DELIVERED-AGE \[DEAD-AGE\] as durations/ },
    { name => 'bad whsec_ (not base64)', vhost => ["EventTriggerSecret $BAD_SECRET"],
      syntax => qr/EventTriggerSecret: the secret after whsec_ is not base64/,
      secret => $BAD_SECRET },
    { name => 'whsec_ too short', vhost => ['EventTriggerSecret whsec_c2hvcnQ='],
      syntax => qr/EventTriggerSecret: a secret must hold 16 to 128 bytes/,
      secret => 'whsec_c2hvcnQ=' },
    { name => 'a secret without whsec_', vhost => ['EventTriggerSecret hunter2hunter2hunter2'],
      syntax => qr/EventTriggerSecret: a secret starts with whsec_ followed by base64/,
      secret => 'hunter2hunter2' },
    { name => 'missing secret file', vhost => ["EventTriggerSecret file:$ROOT/no-such-file"],
      syntax => qr/EventTriggerSecret: cannot read \Q$ROOT\E\/no-such-file: No such file/ },
    { name => 'unreadable secret file (mode 000)',
      vhost => ["EventTriggerSecret file:$file{'secret-unreadable'}"],
      syntax => qr/EventTriggerSecret: cannot read \Q$file{'secret-unreadable'}\E: Permission denied/,
      skip => $root_user && 'root reads any file' },
    { name => 'world-readable secret file (mode 644)',
      vhost => ["EventTriggerSecret file:$file{'secret-world'}"],
      syntax => qr/EventTriggerSecret: \Q$file{'secret-world'}\E holds a secret and is readable by everyone; chmod o-r it/,
      secret => $SECRET },
    { name => 'world-readable header value file',
      vhost => ["EventTriggerHeader Authorization file:$file{'secret-world'}"],
      syntax => qr/EventTriggerHeader: \Q$file{'secret-world'}\E holds a secret and is readable by everyone/,
      secret => $SECRET },
    { name => 'EventTriggerHeader of a header the module sets', vhost => ['EventTriggerHeader Host x'],
      syntax => qr/EventTriggerHeader: Host is set by the module/ },
    { name => 'EventTriggerHeader webhook-*', vhost => ['EventTriggerHeader webhook-id x'],
      syntax => qr/EventTriggerHeader: webhook-\* headers are the signature's/ },
    { name => 'EventTriggerHeader with a bad name', vhost => ['EventTriggerHeader "X Y" z'],
      syntax => qr/EventTriggerHeader: 'X Y' is not a header name/ },
    { name => 'EventTriggerHeader expr= that does not parse',
      vhost => ['EventTriggerHeader X-Admin-User "expr=%{REMOTE_USER"'],
      syntax => qr/EventTriggerHeader X-Admin-User: cannot parse the expression '%\{REMOTE_USER': / },
    { name => 'EventTriggerHeader expr= of an unknown variable',
      vhost => ['EventTriggerHeader X-Who "expr=%{NO_SUCH_VARIABLE}"'],
      syntax => qr/EventTriggerHeader X-Who: cannot parse the expression '%\{NO_SUCH_VARIABLE\}': .*NO_SUCH_VARIABLE/ },
    { name => 'EventTriggerHeader traceparent', vhost => ['EventTriggerHeader traceparent "expr=%{HTTP:traceparent}"'],
      syntax => qr/EventTriggerHeader: traceparent is set by the module/ },
    { name => 'missing EventTriggerCAFile', vhost => ["EventTriggerCAFile $ROOT/no-ca.pem"],
      syntax => qr/EventTriggerCAFile: cannot read \Q$ROOT\E\/no-ca.pem/ },
    { name => 'missing EventTriggerClientCert', vhost => ["EventTriggerClientCert $ROOT/no-cert.pem"],
      syntax => qr/EventTriggerClientCert: cannot read \Q$ROOT\E\/no-cert.pem/ },
    { name => 'bad EventTrigger object', vhost => ['<Location /admin/x>', 'EventTrigger user', '</Location>'],
      at => qr/^\s*EventTrigger user/,
      syntax => qr/EventTrigger: 'user' is not an object; use member, application, key, package_key, jsonrpc or off/ },
    { name => 'empty EventTriggerIdField', vhost => ['<Location /admin/x>', 'EventTriggerIdField ""', '</Location>'],
      at => qr/^\s*EventTriggerIdField/,
      syntax => qr/EventTriggerIdField (?:takes one argument|requires at least one argument|: a field name is required)/ },
    { name => 'EventTriggerIdField for an unknown object', vhost => ['<Location /admin/x>', 'EventTriggerIdField id widget=name', '</Location>'],
      at => qr/^\s*EventTriggerIdField/,
      syntax => qr/EventTriggerIdField: 'widget' is not an object; use member=, application=, key= or package_key= before a field/ },
    { name => 'EventTriggerIdField, a bad pointer', vhost => ['<Location /admin/x>', 'EventTriggerIdField /a~2b', '</Location>'],
      at => qr/^\s*EventTriggerIdField/,
      syntax => qr/EventTriggerIdField: '\/a~2b': '~' in a JSON pointer must be followed by 0 or 1/ },
    { name => 'EventTriggerObject without a leading /', vhost => ['<Location /admin/x>', 'EventTriggerObject data', '</Location>'],
      at => qr/^\s*EventTriggerObject/,
      syntax => qr/EventTriggerObject: 'data': a JSON pointer starts with '\/'/ },
    { name => 'EventTriggerEvent unknown', vhost => ['<Location /admin/x>', 'EventTriggerEvent upsert', '</Location>'],
      at => qr/^\s*EventTriggerEvent/,
      syntax => qr/EventTriggerEvent: 'upsert' is not an event; use auto, create, update or delete/ },
    { name => 'EventTriggerCaptureLimit 65M', vhost => ['EventTriggerCaptureLimit 65M'],
      syntax => qr/EventTriggerCaptureLimit: '65M' is not a size between 1 and 64M/ },
    { name => 'EventTriggerMaxDepth 0', vhost => ['EventTriggerMaxDepth 0'],
      syntax => qr/EventTriggerMaxDepth: a depth between 1 and 64 is required/ },
    { name => 'EventTriggerCircuitBreaker 0', vhost => ['EventTriggerCircuitBreaker 0'],
      syntax => qr/EventTriggerCircuitBreaker: use off, or FAILURES/ },
    { name => 'EventTriggerCircuitBreaker with a bad pause', vhost => ['EventTriggerCircuitBreaker 5 soon'],
      syntax => qr/EventTriggerCircuitBreaker: 'soon' is not a duration/ },
    { name => 'EventTriggerSiteName with a space', vhost => ['EventTriggerSiteName "a b"'],
      syntax => qr/EventTriggerSiteName: a name without spaces or control characters is required/ },

    # inconsistencies of the whole configuration (check_config)
    { name => 'EventTriggerLease not above EventTriggerTimeout',
      main => ['EventTriggerLease 10s', 'EventTriggerTimeout 10s'], tag => 'ET00012', fail => 1,
      re => qr/ET00012: .*EventTriggerLease \(10s\) must be longer than EventTriggerTimeout \(10s/,
      line_check => 1 },
    { name => 'EventTriggerLease below a site\'s EventTriggerTimeout',
      main => ['EventTriggerLease 20s'], vhost => ['EventTriggerTimeout 30s'], bad => 'vhost',
      tag => 'ET00012', fail => 1,
      re => qr/ET00012: .*EventTriggerLease \(20s\) must be longer than EventTriggerTimeout \(30s, [^)]*\) of site site-one/,
      line_check => 1 },
    { name => 'two sites with the same name', site2 => ['EventTriggerEndpoint http://127.0.0.1:9/two',
                                                        'EventTriggerSiteName site-one'],
      tag => 'ET00011', fail => 1, vhost_lines => 1,
      re => qr/ET00011: .*two sites with an EventTriggerEndpoint share the name 'site-one'/ },
    { name => 'an outbox directory that cannot be written',
      main => ["EventTriggerStore sqlite3:$ROOT/readonly/sub/outbox.db"],
      tag => 'ET00015', fail => 1,
      re => qr/ET00015: .*EventTriggerStore \Q$ROOT\E\/readonly\/sub\/outbox.db: \Q$ROOT\E\/readonly\/ is not a writable directory/,
      skip => $root_user && 'root writes any directory',
      line_check => 1 },
    { name => 'an outbox "directory" that is a file',
      main => ["EventTriggerStore sqlite3:$file{'a-file'}/outbox.db"],
      tag => 'ET00015', fail => 1,
      re => qr/ET00015: .*EventTriggerStore \Q$file{'a-file'}\E\/outbox.db: .* is not a writable directory/,
      line_check => 1 },

    # warnings: configtest passes
    { name => 'an EventTrigger location in a site without endpoint',
      site2 => ['<Location /admin/members>', 'EventTrigger member', '</Location>'],
      tag => 'ET00014', fail => 0, vhost_lines => 1,
      re => qr/ET00014: .*<Location \/admin\/members> maps member events, but this site \([^)]*\) has no EventTriggerEndpoint/,
      line_check => 1, line_offset => 1 },    # the EventTrigger line in it
    { name => 'EventTriggerTimeout not above EventTriggerConnectTimeout',
      vhost => ['EventTriggerConnectTimeout 5s', 'EventTriggerTimeout 5s'],
      tag => 'ET00010', fail => 0, vhost_lines => 1,
      re => qr/ET00010: .*EventTriggerTimeout is not longer than EventTriggerConnectTimeout/,
      line_check => 1, line_offset => 1 },    # the EventTriggerTimeout line
    { name => 'EventTriggerTLSVerify off', vhost => ['EventTriggerTLSVerify off'],
      tag => 'ET00013', fail => 0, vhost_lines => 1,
      re => qr/ET00013: .*EventTriggerTLSVerify off: site site-one sends its objects without checking/,
      line_check => 1 },
);

my $n_todo = grep { $_->{line_check} } @cases;
plan tests => 3 + @cases + $n_todo + 1;

# Write the configuration of a case; returns (file, line of the bad
# directive, lines of the <VirtualHost>s).
sub write_conf {
    my($case, $name) = @_;
    my $dir = "$ROOT/$name";
    make_path("$dir/state");
    my @l;
    my %first;
    my $add = sub { my $part = shift; for (@_) { push @l, $_; $first{$part} //= scalar @l } };
    push @l, split /\n/, mpm_load_lines();
    push @l, qq(LoadModule eventtrigger_module "@{[module_so()]}"),
             qq(ServerRoot "$dir"), 'ServerName 127.0.0.1', "Listen 127.0.0.1:$PORT",
             qq(PidFile "$dir/httpd.pid"), qq(ErrorLog "$dir/error_log"),
             'LogLevel warn';
    $add->('main', @{ $case->{main} || [] });
    push @l, "EventTriggerStore sqlite3:$dir/state/outbox.db"
        unless grep { /^EventTriggerStore/ } @{ $case->{main} || [] };
    my %vh;
    push @l, "<VirtualHost 127.0.0.1:$PORT>";
    $vh{one} = @l;
    push @l, '    ServerName one.example', '    EventTriggerSiteName site-one',
             '    EventTriggerEndpoint http://127.0.0.1:9/one';
    $add->('vhost', map { "    $_" } @{ $case->{vhost} || [] });
    push @l, '</VirtualHost>';
    push @l, "<VirtualHost 127.0.0.1:$PORT>";
    $vh{two} = @l;
    push @l, '    ServerName two.example';
    $add->('site2', map { "    $_" } @{ $case->{site2} || [] });
    push @l, '</VirtualHost>';

    my $line;
    if ($case->{at}) {
        ($line) = grep { $l[$_ - 1] =~ $case->{at} } 1 .. @l;
    }
    else {
        my $part = $case->{bad} || (grep { $case->{$_} } qw(main vhost site2))[0];
        $line = $part ? $first{$part} : undef;
    }
    my $file = "$dir/httpd.conf";
    open my $fh, '>', $file or die "$file: $!";
    print $fh join("\n", @l), "\n";
    close $fh;
    return ($file, $line, \%vh);
}

# the baseline: a valid configuration, with a secret file of mode 600
{
    my($file) = write_conf({ vhost => ["EventTriggerSecret file:$file{'secret-ok'}",
                                       "EventTriggerSecret $SECRET",
                                       'EventTriggerHeader X-Api-Key file:' . $file{'secret-ok'},
                                       'EventTriggerHeader X-Admin-User "expr=%{REMOTE_USER}"',
                                       'EventTriggerHeader X-Request-Id "expr=%{HTTP:X-Request-Id}"',
                                       '<Location /admin/members>', 'EventTrigger member',
                                       'EventTriggerIdField id', '</Location>'],
                             main => ['EventTriggerWorkers 4', 'EventTriggerLease 30s',
                                      'EventTriggerRetention 7d 30d'] }, 'valid');
    my($rc, $out) = apache2_run('-t', '-f', $file);
    is($rc, 0, 'a valid configuration passes httpd -t') or diag($out);
    like($out, qr/Syntax OK/, 'with "Syntax OK"');
    unlike($out, qr/ET\d{5}/, 'and no message of the module') or diag($out);
}

my @all_out;
my $i = 0;
for my $case (@cases) {
    $i++;
    my $slug = sprintf '%02d', $i;
    SKIP: {
        if ($case->{skip}) {
            skip "$case->{name}: $case->{skip}", 1 + ($case->{line_check} ? 1 : 0);
        }
        my($file, $line, $vh) = write_conf($case, $slug);
        my($rc, $out) = apache2_run('-t', '-f', $file);
        push @all_out, $out;
        if ($case->{syntax}) {
            my $re = qr/AH00526: Syntax error on line \Q$line\E of \Q$file\E:\s*\n[^\n]*$case->{syntax}/;
            ok($rc != 0 && $out =~ $re,
               "$case->{name}: httpd -t fails, naming $slug/httpd.conf line $line and why")
                or diag("exit $rc, line $line:\n$out");
        }
        else {
            my $ok = ($case->{fail} ? $rc != 0 && $out !~ /Syntax OK/
                                    : $rc == 0 && $out =~ /Syntax OK/)
                     && $out =~ $case->{re};
            if ($case->{vhost_lines}) {
                # names the file and the line of the <VirtualHost> of the site
                my @want = $case->{tag} eq 'ET00011' ? ($vh->{one}, $vh->{two})
                         : $case->{tag} eq 'ET00014' ? ($vh->{two}) : ($vh->{one});
                $ok &&= !grep { $out !~ /\Q$case->{tag}\E: .*\Q$file\E:$_\b/ } @want;
            }
            {
                local $TODO = $case->{todo};
                ok($ok, "$case->{name}: " . ($case->{fail} ? 'httpd -t fails' : 'Syntax OK')
                        . " with $case->{tag}")
                    or diag("exit $rc:\n$out");
            }
            if ($case->{line_check}) {
                $line += $case->{line_offset} // 0;
                like($out, qr/\Q$case->{tag}\E: [^\n]*\Q$file\E:\Q$line\E\b/,
                     "$case->{name}: the message names $slug/httpd.conf line $line");
            }
        }
    }
}

# never the value of a secret in what httpd prints
my @leaks = grep { my $s = $_->{secret}; $s && grep { index($_, $s) >= 0 } @all_out } @cases;
is_deeply([map { $_->{name} } @leaks], [], 'no message repeats a secret\'s value');
