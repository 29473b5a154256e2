# Every object x event x format x console: one create, update and delete of
# each object, on the JSON site and the form site, through the proxied
# console and the in-process one. Each must make exactly one call with the
# protocol's method, path, query, headers and body, in order per object.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use JSON::PP ();
use ETTest qw(:all);

my @objects = qw(member application key package_key);
my @sites = ([et_json => json => '/hooks/json'],
             [et_form => form => '/hooks/form']);   # configured as /hooks/form/
my @consoles = qw(proxy inproc);
my $n_cases = @objects * @sites * @consoles;

plan tests => $n_cases * 3     # the console answered each admin request
            + $n_cases * 3     # each call, in full
            + $n_cases         # create, update, delete arrived in order
            + 1;               # the marker

my $T = JSON::PP::true();
my $F = JSON::PP::false();

# Realistic objects (the protocol's Key carries its member, application,
# package, plan and limits) with every kind of JSON value.
sub payload {
    my $obj = shift;
    my %p = (
        member => {
            username => 'partner1_dev1', email => 'dev@example.com',
            display_name => "D\x{e9}v \x{dc}ser & Co = 100% + more",
            phone => undef, registered => $T, passwd_new => $F,
            karma => 42, ratio => 2.5, big => 9007199254740993,
            tags => ['api', 'a b', 'x&y=z', "\x{20ac}"],
            address => { street => '1 Main St', city => "Z\x{fc}rich",
                         zip => '01234' },
            prefs => {}, roles => [],
            uri => 'http://example.com/cb?a=b&c=d#frag',
        },
        application => {
            name => 'Weather App', description => "two\nlines",
            is_packaged => $F, oauth_redirect_uri => '',
            created => '2024-01-01T00:00:00Z',
            member => { username => 'partner1_dev1', object_type => 'member' },
            tags => [], ads => $T,
        },
        key => {
            apikey => 'bs8ssd5wjeekc797t6ar47v2', status => 'active',
            member => { username => 'partner1_dev1', email => 'dev@example.com',
                        phone => '+1 555 0100', object_type => 'member' },
            application => { name => 'Weather App', object_type => 'application' },
            package => { name => 'Gold Package' }, plan => { name => 'Gold' },
            limits => [ { period => 'second', source => 'plan', ceiling => 2 },
                        { period => 'day', source => 'plan', ceiling => 5000 } ],
            qps_limit_exempt => $F, rate_limit_ceiling => 0, secret => undef,
        },
        package_key => {
            apikey => 'pk9x7a', secret => 's3cr3t/+=', status => 'waiting',
            package => { id => 123, name => 'Gold Package' },
            plan => { id => 7, name => 'Gold', limits => [ { ceiling => 10,
                                                          period => 'minute' } ] },
            rate_limit_exempt => $T, expires => undef,
        },
    );
    return $p{$obj};
}

sub update_payload {
    my $obj = shift;
    my %u = (
        member => { username => 'partner1_dev1', email => 'new@example.com',
                    area_status => 'disabled', karma => -1 },
        application => { name => 'Weather App 2', is_packaged => $T },
        key => { apikey => 'bs8ssd5wjeekc797t6ar47v2', status => 'disabled',
                 limits => [ { period => 'second', ceiling => 5 } ] },
        package_key => { status => 'active', rate_limit_ceiling => 100 },
    );
    return $u{$obj};
}

start_console();
start_receiver(truncate => 1);

my @cases;
for my $s (@sites) {
    my($site, $format, $root) = @$s;
    for my $console (@consoles) {
        for my $i (0 .. $#objects) {
            my $obj = $objects[$i];
            my $id = uniq("$format-$console-$obj");
            my $base = "/$console/$obj";
            my %case = (site => $site, format => $format, root => $root,
                        object => $obj, id => $id, console => $console);
            my $tag = "$site $console $obj";

            my $res = request($site, POST => $base,
                              json => { %{ payload($obj) }, id => $id });
            is($res->code, 201, "$tag: create answered 201")
                or diag($res->as_string);
            $case{'post-create'} = expected_object($res, $obj);

            # PUT for half of them, PATCH for the other half
            my $m = $i % 2 ? 'PATCH' : 'PUT';
            $res = request($site, $m => "$base/$id", json => update_payload($obj));
            is($res->code, 200, "$tag: $m answered 200") or diag($res->as_string);
            $case{'post-update'} = expected_object($res, $obj);

            # DELETE with the object as body (the console answers it) or none
            # (the console answers {"id": ...})
            $res = request($site, DELETE => "$base/$id",
                           $i % 2 ? () : (json => payload($obj)));
            is($res->code, 200, "$tag: delete answered 200") or diag($res->as_string);
            $case{'post-delete'} = expected_object($res, $obj);

            push @cases, \%case;
        }
    }
}

# All calls in (or the time is up), then a marker: anything else would have
# been sent before it.
wait_for(sub { !grep { @{ [calls_for_id($_->{id})] } < 3 } @cases }, 30);
ok(marker(), 'marker call arrived');

for my $c (@cases) {
    for my $ev (qw(post-create post-update post-delete)) {
        check_call([calls_for_event($c->{id}, $ev)],
                   name => "$c->{site} $c->{console} $ev $c->{object}",
                   root => $c->{root}, object => $c->{object}, id => $c->{id},
                   event => $ev, format => $c->{format}, body => $c->{$ev});
    }
    my @order = map { my %q = parse_query($_->{query}); $q{event} }
        sort { $a->{time} <=> $b->{time} } calls_for_id($c->{id});
    is("@order", 'post-create post-update post-delete',
       "$c->{site} $c->{console} $c->{object}: calls in the order of the changes");
}
