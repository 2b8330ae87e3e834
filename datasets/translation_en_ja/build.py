"""Build translation_en_ja: invented English headlines and short sentences with Japanese reference translations,
written by the kit authors.

    python3 datasets/translation_en_ja/build.py

Split rule: row i goes to dev when i % 8 == 3, to test when i % 8 == 6, otherwise to train.
"""
import json
import os

PAIRS = [
    ("City library extends opening hours during exam season", "市立図書館、試験期間中は開館時間を延長"),
    ("Local bakery wins regional bread contest", "地元のパン店、地域のパンコンテストで優勝"),
    ("Heavy snow expected in northern areas this weekend", "今週末、北部で大雪の見込み"),
    ("New bicycle lanes open along the river", "川沿いに新しい自転車専用レーンが開通"),
    ("High school robotics team heads to national finals", "高校のロボット部、全国大会の決勝へ"),
    ("Museum to display rare insect collection", "博物館で珍しい昆虫の標本を展示へ"),
    ("Train services delayed by strong winds", "強風の影響で列車に遅れ"),
    ("Farmers report record apple harvest", "農家からリンゴの記録的な豊作の報告"),
    ("Town hall introduces online appointment system", "町役場がオンライン予約システムを導入"),
    ("Summer festival returns after three years", "夏祭り、3年ぶりに開催"),
    ("Researchers develop cheaper water filter", "研究チームが低価格の浄水フィルターを開発"),
    ("Elementary school opens vegetable garden for students", "小学校が児童のための菜園を開設"),
    ("Rainy season arrives earlier than usual", "梅雨入り、例年より早く"),
    ("Local team clinches spot in basketball playoffs", "地元チーム、バスケットボールのプレーオフ進出を決める"),
    ("Hospital adds evening clinic for working patients", "病院が働く人向けに夜間診療を開始"),
    ("Aquarium welcomes two baby penguins", "水族館でペンギンの赤ちゃん2羽が誕生"),
    ("Bus fares to rise slightly next spring", "来春からバス運賃をわずかに値上げ"),
    ("Students clean up beach before swimming season", "海水浴シーズンを前に学生が海岸を清掃"),
    ("Startup launches app to reduce food waste", "新興企業が食品ロスを減らすアプリを公開"),
    ("Mountain trail reopens after repairs", "補修工事を終え登山道が再開"),
    ("Power outage affects two thousand homes", "停電で約2000戸に影響"),
    ("Art students paint mural at train station", "美術学生が駅に壁画を制作"),
    ("Temperatures to drop sharply overnight", "夜にかけて気温が急激に低下する見込み"),
    ("Volunteers plant five hundred trees in park", "ボランティアが公園に500本の木を植樹"),
    ("Company announces four-day work week trial", "企業が週休3日制の試験導入を発表"),
    ("Children's book fair draws large crowds", "子ども向けの本のフェアに大勢の来場者"),
    ("Fishing boats stay in port as storm approaches", "嵐の接近で漁船が港に待機"),
    ("University opens free lectures to the public", "大学が一般向けの無料公開講座を開講"),
    ("New recycling rules take effect next month", "来月から新しいリサイクルのルールを実施"),
    ("Orchestra to perform at hospital lobby", "オーケストラが病院のロビーで演奏へ"),
    ("Traffic accidents fall for third straight year", "交通事故、3年連続で減少"),
    ("Old cinema reopens as community center", "古い映画館が地域交流センターとして再出発"),
    ("Scientists spot rare bird in wetlands", "湿地で珍しい鳥を科学者が確認"),
    ("Shopping street offers discounts this weekend", "商店街が今週末に割引セールを実施"),
    ("Marathon route changed due to construction", "工事のためマラソンのコースを変更"),
    ("Local chef shares recipes using seasonal fish", "地元の料理人が旬の魚を使ったレシピを紹介"),
    ("Free flu shots offered to elderly residents", "高齢の住民にインフルエンザの予防接種を無料で実施"),
    ("Students design solar-powered boat", "学生が太陽光で動くボートを設計"),
    ("River water levels rise after heavy rain", "大雨で川の水位が上昇"),
    ("Zoo extends hours for night tours", "動物園が夜間ツアーのため開園時間を延長"),
    ("Post office to close early on holiday", "郵便局、祝日は早めに閉局"),
    ("Town celebrates hundredth anniversary", "町が創立100周年を祝う"),
    ("Engineers test driverless bus on campus", "技術者がキャンパス内で自動運転バスを試験運行"),
    ("Lost dog returns home after two weeks", "迷子の犬、2週間ぶりに帰宅"),
    ("Exhibition explores history of local railways", "地域の鉄道の歴史をたどる展覧会"),
    ("Cherry blossoms reach full bloom in the capital", "首都で桜が満開に"),
    ("Firefighters hold safety drill at school", "消防士が学校で防災訓練を実施"),
    ("Prices of vegetables rise after cold spell", "寒波の影響で野菜の価格が上昇"),
    ("Young pianist wins international award", "若手ピアニストが国際的な賞を受賞"),
    ("Park benches replaced with recycled materials", "公園のベンチを再生素材のものに交換"),
    ("Heat warning issued for afternoon hours", "午後の時間帯に熱中症の警戒情報"),
    ("City council approves new sports hall", "市議会が新しい体育館の建設を承認"),
    ("Local newspaper celebrates fifty years", "地元新聞が創刊50周年"),
    ("Students collect old phones for recycling", "学生が古い携帯電話を回収しリサイクルへ"),
    ("Ferry service resumes after engine repair", "エンジンの修理を終えフェリーが運航を再開"),
    ("Tea farmers begin first harvest of the year", "茶農家が一番茶の摘み取りを開始"),
    ("Smartphone app helps tourists find restrooms", "観光客がトイレを探せるスマートフォンアプリ"),
    ("Community garden produces first tomatoes", "市民菜園で初めてのトマトが収穫"),
    ("Rain cancels outdoor concert", "雨のため野外コンサートが中止"),
    ("Teachers share tips for online classes", "教師がオンライン授業のこつを共有"),
    ("Airport adds direct flights to the south", "空港が南部への直行便を新設"),
    ("Residents vote to keep the old bridge", "住民投票で古い橋の保存が決定"),
    ("Science museum opens hands-on space exhibit", "科学館で体験型の宇宙展示が始まる"),
    ("Typhoon weakens before reaching the coast", "台風、沿岸に近づく前に勢力を弱める"),
    ("Local farm offers strawberry picking", "地元の農園でイチゴ狩りを開始"),
    ("Bookstore hosts reading event for children", "書店が子ども向けの読み聞かせ会を開催"),
    ("Water supply to stop briefly for pipe work", "配管工事のため一時的に断水"),
    ("Swimming pool opens earlier this year", "プール、今年は例年より早くオープン"),
    ("Hikers urged to carry extra water", "登山者に水を多めに持つよう呼びかけ"),
    ("Robot helps staff at nursing home", "介護施設でロボットが職員を手助け"),
    ("Pumpkin festival draws families", "カボチャ祭りに家族連れが集まる"),
    ("Night market returns to the harbor", "港にナイトマーケットが復活"),
    ("Students win prize for water-saving idea", "節水のアイデアで学生が受賞"),
    ("New café opens in renovated warehouse", "改装した倉庫に新しいカフェが開店"),
    ("Emergency drill held at city hall", "市役所で緊急時の訓練を実施"),
    ("The museum is closed on Mondays.", "博物館は毎週月曜日が休館です。"),
    ("Please keep your ticket until the end of your trip.", "切符は旅行が終わるまでお持ちください。"),
    ("The meeting has been moved to Thursday afternoon.", "会議は木曜日の午後に変更になりました。"),
    ("It may snow tonight, so drive carefully.", "今夜は雪が降るかもしれないので、運転には気をつけてください。"),
    ("The new park will open next spring.", "新しい公園は来年の春に開園します。"),
    ("Children under six can enter for free.", "6歳未満のお子さまは無料で入場できます。"),
    ("The shop will be closed for inventory on Sunday.", "日曜日は棚卸しのため休業します。"),
    ("Please turn off your phone during the performance.", "公演中は携帯電話の電源をお切りください。"),
    ("The train to the airport leaves every fifteen minutes.", "空港行きの電車は15分おきに出発します。"),
    ("Volunteers are needed for the festival next month.", "来月の祭りのボランティアを募集しています。"),
    ("Tickets sold out within an hour.", "チケットは1時間以内に売り切れました。"),
    ("The road will be closed from nine to five.", "道路は9時から5時まで通行止めになります。"),
    ("Our team finished in second place.", "私たちのチームは2位でした。"),
    ("The library now lends laptops to students.", "図書館では学生にノートパソコンの貸し出しを始めました。"),
    ("Bring a hat and water if you go hiking.", "ハイキングに行くなら、帽子と水を持って行きましょう。"),
    ("The store opens at ten in the morning.", "店は午前10時に開店します。"),
    ("The results will be announced next week.", "結果は来週発表されます。"),
    ("Many people visited the beach on the holiday.", "祝日には多くの人が海岸を訪れました。"),
    ("The bridge was built more than a hundred years ago.", "その橋は100年以上前に造られました。"),
    ("Please wash your hands before eating.", "食事の前には手を洗ってください。"),
    ("The bus stop has moved to the other side of the street.", "バス停は通りの反対側に移りました。"),
    ("Prices will go up from April.", "4月から価格が上がります。"),
    ("The event was postponed because of the rain.", "雨のため、イベントは延期されました。"),
    ("The hospital is looking for more nurses.", "病院では看護師をさらに募集しています。"),
    ("The flowers in the park are at their best this week.", "公園の花は今週が見ごろです。"),
    ("Students must submit the report by Friday.", "学生は金曜日までにレポートを提出しなければなりません。"),
    ("The factory will start using solar power next year.", "工場は来年から太陽光発電を使い始めます。"),
    ("A new bakery opened near the station.", "駅の近くに新しいパン屋が開店しました。"),
    ("The festival attracts visitors from all over the country.", "その祭りには全国から観光客が訪れます。"),
    ("Please call us if you have any questions.", "ご不明な点がございましたら、お電話ください。"),
    ("The concert starts at seven, but doors open at six.", "コンサートは7時開演ですが、開場は6時です。"),
    ("The town plans to build a new school by 2030.", "町は2030年までに新しい学校を建てる計画です。"),
    ("Fresh vegetables are sold at the morning market.", "朝市では新鮮な野菜が売られています。"),
    ("The weather will improve from tomorrow afternoon.", "天気は明日の午後から回復する見込みです。"),
    ("Our office will be closed during the New Year holidays.", "年末年始の休暇中、当事務所は休業いたします。"),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    splits = {"train.jsonl": [], "dev.jsonl": [], "test.jsonl": []}
    for i, (en, ja) in enumerate(PAIRS):
        name = "dev.jsonl" if i % 8 == 3 else "test.jsonl" if i % 8 == 6 else "train.jsonl"
        splits[name].append({"en": en, "ja": ja})
    for name, rows in splits.items():
        with open(os.path.join(here, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print({k: len(v) for k, v in splits.items()}, "total", len(PAIRS))


if __name__ == "__main__":
    main()
