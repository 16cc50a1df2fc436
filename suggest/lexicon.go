package suggest

import "strings"

// The reading lexicon: what words people use mean, in English and Chinese. Everything here is
// data; intent.go says how the reader uses it (docs/suggest-reading.md in words).

// verbs maps a verb's base form to the actions it usually means, first choice first. Later
// choices are tried only when no role grants the first on the resource found: "run the eval
// pipeline" means trigger, "run a shell in staging" means exec. A policy's own action names are
// verbs too, meaning themselves first (Engine.Read).
var verbs = map[string][]string{
	// reading
	"read": {"read"}, "view": {"read"}, "see": {"read"}, "look": {"read"}, "inspect": {"read"},
	"download": {"read", "connect"}, "fetch": {"read", "connect"}, "load": {"read"}, "get": {"read"},
	"copy": {"read"}, "eval": {"read", "trigger"}, "evaluate": {"read"}, "benchmark": {"read"},
	"analyze": {"read"}, "analyse": {"read"}, "query": {"read", "connect"}, "browse": {"read"},
	"sample": {"read"}, "reproduce": {"read"}, "review": {"read"}, "study": {"read"}, "open": {"read"},
	"pull": {"read", "connect"}, "clone": {"connect", "read"}, "distill": {"read"}, "compare": {"read"},
	"train": {"read"}, "finetune": {"read"}, "tune": {"read"}, "explore": {"read"}, "audit": {"read"},
	"monitor": {"read"}, "watch": {"read"}, "check": {"read"}, "investigate": {"read"}, "export": {"read"},
	"access": {"read", "connect", "use"}, "list": {"read"}, "scan": {"read"}, "examine": {"read"},
	"retrieve": {"read"}, "grab": {"read"}, "peek": {"read"}, "verify": {"read"}, "test": {"read"},
	"infer": {"read"}, "consume": {"read"}, "mount": {"read"}, "backup": {"read"}, "search": {"read"},
	"find": {"read"}, "grep": {"read"}, "tail": {"read"}, "score": {"read"}, "probe": {"read"},
	// writing
	"write": {"write"}, "upload": {"write"}, "modify": {"write"}, "edit": {"write"}, "update": {"write"},
	"change": {"write"}, "push": {"write"}, "save": {"write"}, "add": {"write"}, "store": {"write"},
	"overwrite": {"write"}, "append": {"write"}, "label": {"write"}, "annotate": {"write"},
	"curate": {"write"}, "fix": {"write"}, "rotate": {"write", "admin"}, "publish": {"write", "trigger"},
	"record": {"write"}, "refresh": {"write"}, "replace": {"write"}, "import": {"write"},
	"insert": {"write"}, "patch": {"write"}, "commit": {"write"}, "tag": {"write"}, "put": {"write"},
	"create": {"write"}, "ingest": {"write"}, "populate": {"write"}, "rename": {"write"},
	"restore": {"write"}, "recover": {"write"}, "repair": {"write"},
	// deleting
	"delete": {"delete"}, "remove": {"delete"}, "purge": {"delete"}, "erase": {"delete"},
	"wipe": {"delete"}, "drop": {"delete"}, "destroy": {"delete"}, "prune": {"delete"},
	"clean": {"delete"}, "cleanup": {"delete"}, "truncate": {"delete"},
	// executing in a namespace
	"exec": {"exec"}, "shell": {"exec"}, "ssh": {"exec"}, "debug": {"exec"}, "attach": {"exec"},
	"execute": {"exec", "trigger"}, "troubleshoot": {"exec"}, "forward": {"exec"},
	"login": {"exec"}, "log": {"exec"}, "enter": {"exec"}, "restart": {"exec", "write", "trigger"},
	"run": {"trigger", "exec", "use"}, "start": {"trigger", "exec"}, "launch": {"trigger", "deploy", "exec"},
	"trigger": {"trigger"}, "kick": {"trigger"}, "rerun": {"trigger"}, "build": {"trigger"},
	"invoke": {"trigger", "connect"}, "dispatch": {"trigger"}, "resume": {"trigger"},
	"continue": {"trigger"}, "retry": {"trigger"}, "cancel": {"trigger", "write"}, "stop": {"exec", "trigger"},
	"kill": {"delete", "exec"}, "scale": {"deploy", "write"}, "pause": {"exec", "trigger"},
	// deploying
	"deploy": {"deploy", "trigger"}, "release": {"trigger", "deploy"}, "ship": {"deploy", "trigger"},
	"rollout": {"deploy"}, "roll": {"deploy"}, "promote": {"deploy", "trigger"}, "serve": {"deploy"},
	"redeploy": {"deploy"}, "install": {"deploy", "connect"}, "upgrade": {"deploy"}, "rollback": {"deploy"},
	// administering
	"administer": {"admin"}, "admin": {"admin"}, "manage": {"admin", "write"}, "configure": {"admin", "write"},
	"own": {"admin"}, "encrypt": {"admin", "write"}, "reencrypt": {"admin", "write"}, "decrypt": {"read", "admin"},
	// networking
	"call": {"connect"}, "reach": {"connect"}, "connect": {"connect"}, "send": {"connect"},
	"contact": {"connect"}, "egress": {"connect"}, "talk": {"connect"}, "hit": {"connect"}, "ping": {"connect"},
	"post": {"connect"},
	// compute
	"use": {"use", "read", "connect"}, "schedule": {"use"}, "allocate": {"use"}, "borrow": {"use"},
	"reserve": {"use"},
}

// irregular maps irregular inflections to their base form.
var irregular = map[string]string{
	"wrote": "write", "written": "write", "ran": "run", "got": "get", "gotten": "get", "saw": "see",
	"seen": "see", "sent": "send", "built": "build", "did": "do", "put": "put", "read": "read",
	"fine-tune": "finetune", "fine-tuning": "finetune", "log-in": "login", "roll-out": "rollout",
	"clean-up": "cleanup", "back-up": "backup", "kicked": "kick",
	"re-run": "rerun", "port-forward": "forward", "portforward": "forward", "found": "find", "re-deploy": "redeploy", "roll-back": "rollback",
}

// zhVerbs is the Chinese verb lexicon, segment → actions, first choice first.
var zhVerbs = map[string][]string{
	// 读
	"读取": {"read"}, "读": {"read"}, "下载": {"read", "connect"}, "拉取": {"read", "connect"}, "拉": {"read", "connect"},
	"查看": {"read"}, "看": {"read"}, "看看": {"read"}, "获取": {"read"}, "浏览": {"read"}, "检查": {"read"},
	"审查": {"read"}, "分析": {"read"}, "评测": {"read", "trigger"}, "评估": {"read"}, "复现": {"read"},
	"加载": {"read"}, "拷贝": {"read"}, "复制": {"read"}, "导出": {"read"}, "查询": {"read", "connect"},
	"监控": {"read"}, "观察": {"read"}, "训练": {"read"}, "微调": {"read"}, "只读": {"read"}, "阅读": {"read"},
	"读一下": {"read"}, "查": {"read"}, "审计": {"read"}, "克隆": {"connect", "read"}, "挂载": {"read"},
	"访问": {"read", "connect", "use"}, "打开": {"read"}, "蒸馏": {"read"}, "对比": {"read"}, "比较": {"read"},
	// 写
	"写入": {"write"}, "写": {"write"}, "上传": {"write"}, "修改": {"write"}, "更新": {"write"}, "编辑": {"write"},
	"保存": {"write"}, "推送": {"write"}, "标注": {"write"}, "添加": {"write"}, "覆盖": {"write"}, "提交": {"write"},
	"改": {"write"}, "存": {"write"}, "导入": {"write"}, "轮换": {"write", "admin"}, "更换": {"write", "admin"},
	"创建": {"write"}, "新建": {"write"}, "打标": {"write"}, "写权限": {"write"}, "恢复": {"write"},
	"还原": {"write"}, "修复": {"write"}, "加": {"write"}, "打分": {"read"}, "发到": {"connect"}, "发送": {"connect"},
	"安装": {"deploy", "connect"},
	// 删
	"删除": {"delete"}, "删": {"delete"}, "清理": {"delete"}, "清除": {"delete"}, "移除": {"delete"},
	"销毁": {"delete"}, "清空": {"delete"},
	// 执行
	"调试": {"exec"}, "进入": {"exec"}, "执行": {"exec", "trigger"}, "登录": {"exec"}, "登入": {"exec"},
	"排查": {"exec"}, "重启": {"exec", "write", "trigger"},
	"触发": {"trigger"}, "启动": {"trigger", "exec"}, "运行": {"trigger", "exec", "use"}, "跑": {"trigger", "exec", "use"}, "跑个": {"trigger", "exec", "use"},
	"构建": {"trigger"}, "重跑": {"trigger"},
	// 部署
	"部署": {"deploy", "trigger"}, "发布": {"trigger", "deploy"}, "上线": {"deploy", "trigger"},
	"发版": {"deploy", "trigger"}, "回滚": {"deploy"},
	// 管理
	"管理": {"admin", "write"}, "配置": {"admin", "write"},
	// 网络
	"调用": {"connect", "use"}, "连接": {"connect"}, "连": {"connect"}, "访问外网": {"connect"},
	"联网": {"connect"},
	// 计算
	"使用": {"use", "read", "connect"}, "调度": {"use"}, "占用": {"use"},
}

// nounAlso are verbs that are as often nouns: before a compound head ("eval results", "release
// pipeline", "deploy key", "发布流水线") they are read as nouns, whatever their position.
var nounAlso = setOf(`eval evaluate run release build deploy publish access audit debug log check
	update review train test query sample benchmark monitor record label change shell backup
	export import ingest upload download login 发布 部署 运行 评测 评估 训练 构建 访问 审计 调试 上线 登录`)

// compoundHeads are nouns that a nounAlso word before them modifies.
var compoundHeads = setOf(`result results pipeline pipelines key keys log logs note notes branch
	branches token tokens script scripts history report reports metric metrics artifact artifacts
	output outputs dashboard dashboards workflow workflows config job jobs server servers cluster
	clusters environment env bucket buckets suite suites set sets data dataset datasets queue
	record records record trail trails run runs candidate candidates notes tool tooling
	流水线 密钥 日志 结果 记录 分支 脚本 环境 集群 任务 报告 指标 数据 数据集 队列 工具 产物 版本`)

// accessNouns after a verb make it a verb wherever it stands ("orion write access").
var accessNouns = setOf(`access permission permissions right rights privilege privileges role roles 权限`)

// Negators open a scope in which verbs are excluded and, when it has no verb, nouns are dropped.
var negators = setOf(`not no never without dont doesnt didnt cant cannot wont shouldnt neednt
	nor avoid except excluding 不 不要 不用 无需 无须 不需要 别 不必 不想 不能 禁止 不包括 除了 而不是 非 不是`)

// negatorPhrases are multi-word negators, matched on lowercase words.
var negatorPhrases = [][]string{{"rather", "than"}, {"instead", "of"}, {"no", "need", "to"}, {"do", "not"},
	{"does", "not"}, {"did", "not"}, {"other", "than"}}

// restrictors open a scope whose verbs are the only ones their need wants.
var restrictors = setOf(`only just solely merely purely 只 仅 只要 只需 只需要 仅仅 只想 仅需 只是`)

// restrictorPhrases are multi-word restrictors.
var restrictorPhrases = [][]string{{"nothing", "but"}, {"nothing", "more", "than"}, {"no", "more", "than"}}

// conjunctions split a sentence into needs (and, with nothing but verbs before them, join verbs).
var conjunctions = setOf(`and also plus then as well 以及 和 并且 还要 同时 并 另外 还有 及 与 跟 然后 再 或 或者 or`)

// scopeEnders end a negation or restriction scope without splitting a need.
var scopeEnders = setOf(`but however though instead rather 但 但是 而是 不过 而 可是`)

// emergencyWords say that something is on fire: only then is a break-glass role considered.
var emergencyWords = setOf(`emergency emergencies incident incidents outage outages breakglass
	break-glass sev0 sev1 sev-0 sev-1 p0 firefight firefighting 紧急 故障 应急 事故 宕机 挂了 线上事故`)

// determiners before a verb-looking word make it a noun ("the release", "our evals").
var determiners = setOf(`the a an my our your their his her its this that these those some any each
	every both either neither all 的 这个 那个 这些 那些 该 此 所有 全部 每个`)

// modifiers before a verb-looking word make it a noun too ("the nightly release"), but are
// content words themselves when the catalogue uses them ("nightly").
var modifiers = setOf(`latest new old nightly daily weekly monthly last next current previous same
	other another whole entire shared main primary`)

// zhVerbEnglish names the English verb of a Chinese one, so that a policy's own action (annotate,
// rotate) is found from Chinese too.
var zhVerbEnglish = map[string]string{"轮换": "rotate", "更换": "rotate", "标注": "annotate", "打标": "label",
	"训练": "train", "微调": "finetune", "评测": "eval", "评估": "evaluate", "发布": "publish", "部署": "deploy",
	"审计": "audit", "调试": "debug", "执行": "execute", "触发": "trigger", "上传": "upload", "下载": "download",
	"删除": "delete", "读取": "read", "写入": "write", "管理": "manage", "使用": "use", "连接": "connect"}

// enGlossary folds English words to the Chinese words of a catalogue written in Chinese.
var enGlossary = map[string][]string{"chinese": {"中文"}, "english": {"英文"}, "preference": {"偏好"},
	"annotation": {"标注"}, "queue": {"队列"}}

// preVerb words may stand between a clause's start and its verb ("I would like to", "can we",
// "please", "我想", "帮我").
var preVerb = setOf(`i we you me us need needs needed want wants wanted would like to please pls
	can could may might should must let lets help have has had gotta going gonna will shall also
	then quickly quick first again actually really still now today kindly able be trying try hoping
	hope wish im id ive ill is are am was were do does did give grant provide allow enable request
	requesting require requires obtain so 我 我们 咱们 要 想 想要 需要 请 帮 帮我 帮忙 能 能否 可以 可否 得
	先 再 还 也 去 来 麻烦 希望 打算 准备 给我 让我 申请 我要 我需要 我想 请帮我 需 应该 必须 一下 尽快 马上`)

// stopWords carry no meaning for search and are never unknown: function words, generic request
// words and fillers in both languages.
var stopWords = setOf(`a an the i me my we our us you your to of on in into for from with at by as
	is are be been being am it its this that these those need needs want wants would like please can
	could should must some any all so also do does did have has had there here then than about via up
	out new their them they he she his her will shall may might get got getting let lets more most
	very quick quickly today tomorrow now again job jobs task tasks work team access permission
	permissions right rights privilege privileges role roles hi hello hey thanks thank pls kindly
	project projects experiment experiments research paper deadline asap soon week weeks day days
	hour hours minute minutes h m d hr hrs min mins something stuff thing things everything anything
	whatever which what who whom whose where when why how if because since while during until over
	under between through across after before around against among per each every both either
	neither other another same such own myself ourselves yourself just only even still already
	really actually basically currently please able ok okay yes yeah sure well much many few little
	lot lots bit way ways kind sort one ones someone somebody anyone anybody everyone people person
	colleague colleagues manager boss help give grant provide allow enable request requesting
	require required requires obtain needed wanted going gonna gotta im id ive ill were was
	do doing done make making made let's there's it's i'm i'd i've i'll s t ll ve re
	purpose purposes reason reasons use-case usecase case cases goal goals plan plans part
	temporary temporarily briefly time times moment while later earlier first second again
	night nights tonight yesterday morning evening afternoon weekend weekday off away back
	inside outside onto within behind stuck wrong broken failing failed crashing crashed bad good
	big small large huge tiny several few quick slow hung hanging hangs flaky why whether
	nothing somewhere anywhere ago recent recently fast urgently down corrupted corrupt leaked
	compromised crashlooping crashloop destructive immediately anyway cto ceo cso ciso vp
	folks folk guys everyone live	的 了 我 我们 你 你们 他 她 它 帮 帮我 一下 请 要 想 想要 需要 能 能否 可以 把 给 在 对 是 有 个 这 那
	这个 那个 些 一些 吗 呢 吧 啊 呀 哦 用 来 去 做 时 为了 因为 所以 现在 今天 明天 马上 尽快 权限 访问权限 申请
	麻烦 谢谢 得 先 还 也 就 都 很 从 到 上 中 里 下 以 让 被 将 并 或 及 其 其中 之 之前 之后 一个 一份 份
	一次 下午 上午 晚上 小时 天 分钟 周 用于 以便 便于 方便 相关 里面 上面 中的 里的 我要 我需要 我想 时候
	项目 实验 工作 任务 一点 东西 所需 需 应该 必须 还是 一些 想请 希望 打算 准备 帮忙 给我 让我 请帮我
	重新 新的 新 旧的 临时 一批 一份 一次 一下 这次 那次 上一个 下一个 两个 都 都要 直接 一个个 里 里面 上的
	往 进 进去 内 小 旧 个 几 篇 几篇 一直 够了 就够了 足够 笔记本 本地 电脑
	notebook notebooks laptop workstation desktop computer colab jupyter terminal enough mind`)

// durationUnits after a number make it a duration, not a name ("for 2 hours", "8h", "3天").
var durationUnits = setOf(`h hr hrs hour hours m min mins minute minutes d day days w wk week weeks
	month months s sec secs second seconds 小时 天 分钟 周 个月 秒`)

// zhGlossary folds Chinese nouns to the English words catalogues are usually written in, used
// when the Chinese word itself is not in the catalogue: "权重" finds weights.
var zhGlossary = map[string][]string{
	"权重": {"weight"}, "模型": {"model"}, "模型权重": {"model", "weight"}, "数据集": {"dataset"},
	"数据": {"data"}, "检查点": {"checkpoint"}, "日志": {"log"}, "密钥": {"key"}, "秘钥": {"key"},
	"流水线": {"pipeline"}, "管道": {"pipeline"}, "命名空间": {"namespace"}, "集群": {"cluster"},
	"数据库": {"database"}, "存储桶": {"bucket"}, "桶": {"bucket"}, "评测": {"eval"}, "评估": {"eval"},
	"训练": {"training"}, "推理": {"inference"}, "生产": {"prod"}, "生产环境": {"prod"}, "线上": {"prod"},
	"预发": {"staging"}, "预发环境": {"staging"}, "测试环境": {"staging"}, "镜像": {"image"},
	"仓库": {"repo"}, "代码库": {"repo"}, "凭证": {"credential"}, "凭据": {"credential"}, "令牌": {"token"},
	"外网": {"egress"}, "指标": {"metric"}, "仪表盘": {"dashboard"}, "看板": {"dashboard"},
	"偏好": {"preference"}, "奖励模型": {"reward", "model"}, "奖励": {"reward"}, "代码": {"code"},
	"语料": {"corpus"}, "语料库": {"corpus"}, "基准": {"benchmark"}, "红队": {"red", "team"},
	"安全": {"safety"}, "预训练": {"pretrain"}, "反馈": {"feedback"}, "客户": {"customer"},
	"用户": {"user"}, "接口": {"api"}, "服务": {"service"}, "服务器": {"server"}, "节点": {"node"},
	"显卡": {"gpu"}, "算力": {"gpu"}, "机器": {"machine"}, "产物": {"artifact"}, "制品": {"artifact"},
	"结果": {"result"}, "状态": {"status"}, "请求": {"request"}, "样本": {"sample"}, "资源": {"resource"}, "标注": {"label"}, "对话": {"chat"}, "文档": {"doc"}, "配置": {"config"},
	"证书": {"certificate"}, "环境": {"environment"}, "分支": {"branch"}, "网页": {"web"},
	"抓取": {"crawl"}, "爬虫": {"crawl"}, "密码": {"password"}, "账号": {"account"}, "备份": {"backup"},
	"快照": {"snapshot"}, "版本": {"version"}, "基座": {"base"}, "基础": {"base"}, "指令": {"instruct"},
	"文件": {"file"}, "记录": {"record"}, "测试": {"test"}, "容器": {"container", "pod"}, "特征库": {"feature", "store"},
	"特征": {"feature"}, "工具": {"tool"}, "攻击": {"attack"}, "论文": {"paper"}, "分词器": {"tokenizer"},
	"内存": {"memory"}, "隐私": {"privacy"}, "题目": {"question"}, "消融": {"ablation"}, "问题集": {"question"},
	"多模态": {"multimodal"}, "视觉": {"vision"}, "语音": {"speech"}, "音频": {"audio"}, "嵌入": {"embedding"},
}

// zhWords is the segmenter's own small dictionary: common words that a request may contain and
// that must not be cut into single characters (the lexicon, stop words and glossary are added
// to it, and the catalogue's Chinese aliases by each engine).
var zhWords = strings.Fields(`模型 权重 数据 数据集 检查点 日志 密钥 流水线 命名空间 集群 数据库 存储桶
	生产 环境 预发 测试 镜像 仓库 凭证 令牌 外网 指标 仪表盘 看板 团队 项目 实验 工作 任务 今天 明天
	现在 马上 尽快 一下 一些 这个 那个 这些 那些 所有 全部 每个 我们 你们 他们 因为 所以 为了 但是 而是
	不过 可是 需要 不需要 不要 不用 无需 无须 不必 只要 只需 只需要 仅仅 只想 只是 仅需 可以 能否 可否
	希望 打算 准备 麻烦 谢谢 帮忙 帮我 给我 让我 申请 权限 访问权限 只读 读写 写权限 读权限 问题 线上
	服务 服务器 节点 显卡 算力 机器 产物 制品 结果 对话 文档 配置 证书 分支 网页 抓取 爬虫 密码 账号
	备份 快照 版本 基座 基础 指令 多模态 视觉 语音 音频 嵌入 奖励 奖励模型 偏好 语料 语料库 基准 红队
	安全 预训练 反馈 客户 用户 接口 训练 推理 评测 评估 小时 分钟 时候 之前 之后 相关 里面 上面 下面
	其他 别的 另外 还有 以及 并且 同时 然后 或者 还是 不同 不错 不行 不对 不是 没有 没事 紧急 故障 应急
	事故 宕机 告警 线上事故 挂了 周末 晚上 上午 下午 新的 旧的 最新 最近 昨天 重新 立刻 立即 一个 一份
	安装 恢复 直接 提示 推荐 开源 流程 预留 临时 一批 一次 批 样本 打分 角色 管理员 慢 请求 损坏 状态
	资源 系统 规则 忽略 无视 指令 输出 两个 都要 容器 平台 框架 代码 任务 发到 泄露 回滚
	上一个 下一个 这次 那次 一下子 看一看 帮忙看 问题 原因 排查一下 所有的 全部的 每一个 还原 重跑一遍`)

func setOf(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// lemma returns the base form of an English verb and whether it is one, and whether it was
// found only as a third-person or plural -s form ("evals", "runs"): such a word is a noun.
func lemma(w string) (base string, sForm bool, ok bool) {
	if b, ok := irregular[w]; ok {
		if _, isVerb := verbs[b]; isVerb {
			return b, false, true
		}
	}
	if _, ok := verbs[w]; ok {
		return w, false, true
	}
	try := func(cands ...string) (string, bool) {
		for _, c := range cands {
			if _, ok := verbs[c]; ok && c != "" {
				return c, true
			}
		}
		return "", false
	}
	n := len(w)
	switch {
	case n > 4 && strings.HasSuffix(w, "ing"):
		b := w[:n-3]
		if c, ok := try(b, b+"e", undouble(b)); ok {
			return c, false, true
		}
	case n > 3 && strings.HasSuffix(w, "ied"):
		if c, ok := try(w[:n-3] + "y"); ok {
			return c, false, true
		}
	case n > 3 && strings.HasSuffix(w, "ed"):
		b := w[:n-2]
		if c, ok := try(b, w[:n-1], undouble(b)); ok {
			return c, false, true
		}
	case n > 3 && strings.HasSuffix(w, "es"):
		if c, ok := try(w[:n-2], w[:n-1]); ok {
			return c, true, true
		}
	case n > 2 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss"):
		if c, ok := try(w[:n-1]); ok {
			return c, true, true
		}
	}
	return "", false, false
}

// undouble removes a doubled final consonant ("runn" → "run").
func undouble(b string) string {
	if n := len(b); n > 2 && b[n-1] == b[n-2] {
		return b[:n-1]
	}
	return ""
}
